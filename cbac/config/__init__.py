"""cbac.config"""
