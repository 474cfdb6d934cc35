"""hw/bnn"""
