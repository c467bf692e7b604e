"""twistd options and makeService (placeholder until the foundation lands)."""
from twisted.python import usage


class Options(usage.Options):
    optParameters = [["config", "c", "/etc/cbac/router.conf", "IOS configuration file"]]


def makeService(options):
    raise NotImplementedError
