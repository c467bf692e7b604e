"""cbac.inspect: CBAC stateful inspection.

``SessionTable`` (:mod:`cbac.inspect.session`) and ``app_factories``
(:mod:`cbac.inspect.factories`) are exported lazily, so importing
``cbac.inspect.api`` stays light.
"""


def __getattr__(name):
    if name in ("SessionTable", "Session"):
        from cbac.inspect import session
        return getattr(session, name)
    if name == "app_factories":
        from cbac.inspect.factories import app_factories
        return app_factories
    raise AttributeError(name)


__all__ = ["SessionTable", "Session", "app_factories"]
