"""cbac.config: the IOS configuration language of cbac.

* :mod:`cbac.config.model`  - typed model (the shared contract)
* :mod:`cbac.config.parser` - IOS text -> model, with diagnostics
* :mod:`cbac.config.render` - model -> ``show running-config``
* :mod:`cbac.config.check`  - semantic checks (references, overlaps, devices)
* :mod:`cbac.config.loader` - a file -> (model, diagnostics), ``--port`` applied:
  the start (tap.py) and every reload (app.py) read files through it
* :mod:`cbac.config.show`   - ``show ip inspect`` configuration renderings
* :mod:`cbac.config.errors` - :class:`Diagnostic`, :class:`ConfigError`
"""

from cbac.config.check import check
from cbac.config.errors import ConfigError, Diagnostic
from cbac.config.parser import parse, parse_config, parse_file
from cbac.config.render import render

__all__ = ["check", "ConfigError", "Diagnostic", "parse", "parse_config",
           "parse_file", "render"]
