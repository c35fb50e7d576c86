"""nnparity.shared.io"""
