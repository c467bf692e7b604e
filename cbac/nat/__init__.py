"""cbac.nat"""
