"""Reconstruction maths: CSGM (paper eq. 3), image adaptation (eq. 4) and back-projection (eqs. 5-6)."""
