"""hw/eie"""
