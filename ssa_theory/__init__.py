"""ssa_theory: controlled experiments on attention temperature and contextual sparsity.

Reproduces and checks the theory of "Selective Attention: Enhancing Transformer through Principled
Context Control" (Zhang, Chang, Li, Roy-Chowdhury, Chen, Oymak; NeurIPS 2024, arXiv 2411.12892).
"""

__version__ = "0.1.0"
