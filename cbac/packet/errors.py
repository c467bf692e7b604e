"""The one exception type of the packet codecs."""


class MalformedPacket(ValueError):
    """A frame or packet that cannot be parsed.  ``reason`` is a short
    counter name (``truncated``, ``bad-ihl``, ...) the router counts drops
    under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
