"""nnparity.shared.bench"""
