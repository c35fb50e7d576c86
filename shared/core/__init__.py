"""nnparity.shared.core"""
