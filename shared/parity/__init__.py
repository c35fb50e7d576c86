"""nnparity.shared.parity"""
