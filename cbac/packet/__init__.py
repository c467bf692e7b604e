"""cbac.packet"""
