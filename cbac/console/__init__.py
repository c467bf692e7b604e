"""cbac.console"""
