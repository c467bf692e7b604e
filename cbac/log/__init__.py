"""cbac.log"""
