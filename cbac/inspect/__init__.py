"""cbac.inspect"""
