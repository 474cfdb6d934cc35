"""hw/common"""
