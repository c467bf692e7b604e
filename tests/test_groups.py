"""tests/groups.py: which modules make test runs in parallel, which alone."""

# test-group: unit
# (this module only names the lab's words, in strings)

import io
import os
import sys

from twisted.trial import unittest

from tests import groups


class GroupTests(unittest.TestCase):
    def write(self, d, name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def test_every_module_in_exactly_one_group(self):
        unit, lab = groups.modules("unit"), groups.modules("lab")
        here = sorted("tests." + f[:-3] for f in os.listdir(groups.HERE)
                      if f.startswith("test_") and f.endswith(".py"))
        self.assertEqual(sorted(unit + lab), here)
        self.assertFalse(set(unit) & set(lab))
        for name in ("tests.test_lab", "tests.test_lab_inspect", "tests.test_linuxport",
                     "tests.test_offload", "tests.test_package", "tests.test_metrics"):
            self.assertIn(name, lab)
        for name in ("tests.test_acl", "tests.test_console_budget", "tests.test_groups"):
            self.assertIn(name, unit)

    def test_new_modules_land_in_their_group(self):
        d = self.mktemp()
        os.makedirs(d)
        self.write(d, "test_lab_sip.py", "x = 1\n")
        self.write(d, "test_keepalived.py", "from tests.labrun import LabCase\n")
        self.write(d, "test_nsport.py", "p = Port(netns=ns)\n")
        self.write(d, "test_pair.py", "from tests.pairlab import PairLab\n")
        self.write(d, "test_deb.py", "run(['dpkg', '-i', deb])\n")
        self.write(d, "test_marked.py", "# test-group: lab\nx = 1\n")
        self.write(d, "test_parser.py", "from tests.labrun import SEED_CONFIG\n")
        self.write(d, "test_words.py", "# test-group: unit\n'a LabCase in a string'\n")
        self.write(d, "helper.py", "LabCase\n")
        pkg = os.path.basename(d)
        self.assertEqual(groups.modules("lab", d),
                         [pkg + "." + m for m in ("test_deb", "test_keepalived", "test_lab_sip",
                                                  "test_marked", "test_nsport", "test_pair")])
        self.assertEqual(groups.modules("unit", d),
                         [pkg + ".test_parser", pkg + ".test_words"])

    def test_offload_off_pass_leaves_out_kernel_references(self):
        got = groups.offload_off_tests(["tests.test_lab_ftp", "tests.test_lab_offload",
                                        "tests.test_lab_inspect"])
        self.assertIn("tests.test_lab_ftp.FtpCbac", got)
        self.assertIn("tests.test_lab_ftp.FtpZbf", got)
        self.assertIn("tests.test_lab_offload", got)
        self.assertNotIn("tests.test_lab_ftp", got)
        self.assertFalse([n for n in got if "KernelReference" in n], got)
        # nothing of the host-block tests can be offloaded
        self.assertIn("tests.test_lab_inspect.FloodCbac", got)
        self.assertNotIn("tests.test_lab_inspect.HostBlockCbac", got)
        self.assertNotIn("tests.test_lab_inspect.HostBlockZbf", got)

    def test_usage(self):
        self.patch(sys, "stderr", io.StringIO())
        self.assertEqual(groups.main(["groups.py"]), 2)
        self.assertEqual(groups.main(["groups.py", "bogus"]), 2)
        self.assertIn("usage", sys.stderr.getvalue())
