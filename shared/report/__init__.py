"""nnparity.shared.report"""
