"""sw/bnn"""
