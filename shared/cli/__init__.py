"""nnparity.shared.cli"""
