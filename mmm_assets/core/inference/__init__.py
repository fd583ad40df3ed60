"""How PyMC, numpyro and PyTensor are driven: the sampling loop sized to the ESS target, progress routing, warm starts
from a previous posterior or the Laplace approximation, mass-matrix adaptation and compile settings. Every run-time
patch of a library's internals lives in this package and nowhere else.
"""
