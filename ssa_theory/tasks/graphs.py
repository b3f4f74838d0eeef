"""Shared task: graphs whose nodes cover every degree 1..D, their transition matrices, and next-token data.

Used by ``graph_transition`` (paper Fig. p5, Table 1) and ``norm_spikiness`` (paper Fig. p4). ``VERSION``
enters the run hash of every experiment that uses this task (``Experiment.tasks``): change it whenever
a change here changes the numbers (the graphs, the transition matrix, or the order of random draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from ssa_theory import theory
from ssa_theory.config import ConfigError
from ssa_theory.sampling import MemberStream
from ssa_theory.seeding import derive_seed

VERSION = "1"


def check_graph(size_name: str, n_nodes: int, max_degree: int, smoothing: float) -> None:
    """A config's graph fields (its node count is called ``size_name``): ``ConfigError`` naming the
    field and the fix. Both experiments on the graph task check them here."""
    from ssa_theory.config import require

    require(n_nodes >= 3, f"{size_name} must be >= 3 (got {n_nodes})")
    require(max_degree >= 1, f"max_degree must be >= 1 (got {max_degree})")
    require(max_degree < n_nodes, f"max_degree={max_degree} must be < {size_name}={n_nodes}: a node has at most "
                                  f"{size_name} - 1 neighbours; lower max_degree or raise {size_name}")
    require(0.0 <= smoothing < 1.0, f"smoothing must lie in [0, 1) (got {smoothing})")


def degree_sequence(n_nodes: int, max_degree: int) -> list[int]:
    """Sorted degrees cycling through 1..D; one repeated degree is raised by one if the sum is odd.

    ``degree_sequence(16, 5) == [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]`` (sum 46).
    """
    deg = sorted(1 + i % max_degree for i in range(n_nodes))
    if sum(deg) % 2:
        for i in reversed(range(n_nodes)):
            if deg[i] < max_degree and deg.count(deg[i]) > 1:
                deg[i] += 1
                break
        else:
            raise ConfigError(
                f"no simple graph on n_nodes={n_nodes} has every degree 1..{max_degree} this way; raise n_nodes"
            )
        deg.sort()
    if not nx.is_graphical(deg):
        raise ConfigError(f"degrees {deg} form no simple graph; raise n_nodes or lower max_degree")
    return deg


def build_graph(n_nodes: int, max_degree: int, graph_seed: int) -> nx.Graph:
    """A random simple graph with ``degree_sequence(n_nodes, max_degree)``; node i has the i-th degree.

    Havel-Hakimi gives one graph with these degrees; degree-preserving double-edge swaps (seeded)
    then randomise who is connected to whom.
    """
    deg = degree_sequence(n_nodes, max_degree)
    G = nx.havel_hakimi_graph(deg)
    m = G.number_of_edges()
    try:
        nx.double_edge_swap(G, nswap=10 * m, max_tries=1000 * m, seed=derive_seed(graph_seed, "task"))
    except (nx.NetworkXAlgorithmError, nx.NetworkXError):
        pass  # too small to swap further; every completed swap kept the degrees
    assert [d for _, d in sorted(G.degree())] == deg
    return G


def transition_matrix(adjacency: np.ndarray, smoothing: float) -> np.ndarray:
    """``P* = (1 - g) D^-1 A + g / K``."""
    K = adjacency.shape[0]
    return (1.0 - smoothing) * adjacency / adjacency.sum(1, keepdims=True) + smoothing / K


def expected_ce(logp: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Exact expected CE against P (rows weighted uniformly): (E, K, K) -> (E,)."""
    return -(torch.where(P > 0, P * logp, torch.zeros_like(logp))).sum(-1).mean(-1)


class TransitionSampler:
    """Next-token data for E members: ``sample()`` gives (E, batch) current and next tokens on the device.

    The current token is uniform over the vocabulary, the next one drawn from ``P[current]`` by
    inverse CDF. Member e draws only from ``generators[e]`` (CPU, in chunks: ``ssa_theory.sampling``),
    so its data match a single run; the inverse CDF is looked up on the device.
    """

    def __init__(self, P: np.ndarray, generators, batch_size: int, device) -> None:
        K = P.shape[0]
        self.cdf = torch.as_tensor(np.cumsum(P, 1), dtype=torch.float32, device=device)
        draw = lambda g, n: (torch.randint(K, (n, batch_size), generator=g),
                             torch.rand(n, batch_size, generator=g))  # noqa: E731
        self.stream = MemberStream(generators, draw, device)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        cur, u = self.stream()  # (E, batch) each
        nxt = torch.searchsorted(self.cdf[cur], u[..., None]).squeeze(-1)
        return cur, nxt.clamp_max(self.cdf.shape[0] - 1)


@dataclass(frozen=True)
class GraphTask:
    """The graph task as every experiment using it builds it: adjacency, degrees, P*, and its floor.

    ``floor`` is the mean over nodes of the row entropies of P* (uniform rows), the least expected
    cross-entropy any model can reach (``theory.row_entropy``).
    """

    adjacency: np.ndarray  # (K, K) 0/1
    degrees: np.ndarray  # (K,) int
    P: np.ndarray  # (K, K) the true transition matrix
    entropy: np.ndarray  # (K,) each row's entropy

    @classmethod
    def build(cls, n_nodes: int, max_degree: int, graph_seed: int, smoothing: float) -> "GraphTask":
        A = nx.to_numpy_array(build_graph(n_nodes, max_degree, graph_seed), nodelist=range(n_nodes))
        degrees = A.sum(1).astype(int)
        entropy = np.array([theory.row_entropy(n_nodes, int(s), smoothing) for s in degrees])
        return cls(A, degrees, transition_matrix(A, smoothing), entropy)

    @property
    def floor(self) -> float:
        return float(np.mean(self.entropy))

    @property
    def key_frequency(self) -> torch.Tensor:
        """How often each token is the next one (1, K), for the ``freq`` strategy."""
        return torch.as_tensor(self.P.mean(0), dtype=torch.float32)[None]
