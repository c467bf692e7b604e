"""One configuration loader (cbac.config.loader) for the start and every
reload: the ``--port`` bindings of the command line survive a reload."""

import os

from twisted.trial import unittest

from cbac.config.loader import load
from tests.test_console_appliance import real_appliance


class LoaderTests(unittest.TestCase):
    def write(self, text):
        tmp = self.mktemp()
        os.makedirs(tmp)
        path = os.path.join(tmp, "r.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_ports_override_and_checks(self):
        path = self.write("interface Ethernet0\n ip address 10.0.0.1 255.255.255.0\n"
                          "cbac port Ethernet0 cbac-nodev0\n"
                          "ip access-group 199 in\n")
        model, diags = load(path, {"Ethernet0": "lo"})
        self.assertEqual(model.ports["Ethernet0"].device, "lo")
        self.assertEqual([d.line for d in diags], sorted(d.line for d in diags))
        self.assertNotIn("cbac-nodev0", " ".join(d.message for d in diags))
        model, diags = load(path, strict=True)
        self.assertIn("cbac port: network device cbac-nodev0 does not exist",
                      [d.message for d in diags if d.is_error])

    def test_unreadable_file_raises(self):
        self.assertRaises(OSError, load, os.path.join(self.mktemp(), "nope.conf"))


class ReloadKeepsPortOptionTests(unittest.TestCase):
    def test_reload_config_keeps_port_bindings(self):
        app, ports, conf = real_appliance(self)
        app.port_overrides = {"Ethernet2/0": "lo"}        # twistd cbac --port Ethernet2/0=lo
        ok, text = app.reload_config()
        self.assertTrue(ok, text)
        self.assertEqual(app.model.ports["Ethernet2/0"].device, "lo")
        self.assertEqual(app.model.ports["Ethernet2/1"].device, "inside")
        run = app.show_running_config()
        self.assertIn("cbac port Ethernet2/0 lo\n", run)
        self.assertIn("cbac port Ethernet2/1 inside\n", run)
