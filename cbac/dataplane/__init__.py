"""cbac.dataplane"""
