"""cbac.acl"""
