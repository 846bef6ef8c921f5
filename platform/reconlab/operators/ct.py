"""Parallel-beam CT on ASTRA: the geometry, ASTRA's own SIRT and FBP, and the
projector as a differentiable torch operator.

ASTRA's CPU projector (``linear`` by default: Joseph's method) gives the
system matrix W (rows: detector bins x angles, columns: pixels). The torch
operator ``A`` applies W to a batch in one sparse product, on any device,
and its backward pass is the backprojection Wᵀ, so a data-fidelity term
||A x - y||² and image priors make one objective. SIRT is

    x <- x + C Wᵀ R (y - W x),   R = diag(1 / row sums), C = diag(1 / column sums)

exactly as ASTRA's ``SIRT`` algorithm computes it (``tests/test_ct.py``
checks the two agree). Sinograms are (b, 1, angles, detectors), images
(b, 1, n, n); pixel size and detector spacing are 1.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

PROJECTORS = ("line", "strip", "linear")  # ASTRA's CPU parallel-beam projectors


@dataclasses.dataclass(frozen=True)
class ParallelBeam:
    """``angles`` equally spaced over [0, 180°); ``detectors`` bins of width 1
    (0: enough to see the whole image at every angle, ceil(n sqrt 2))."""

    size: int
    angles: int
    detectors: int = 0
    projector: str = "linear"

    def __post_init__(self):
        if self.size < 2 or self.angles < 1 or self.detectors < 0:
            raise ValueError("size must be >= 2, angles >= 1 and detectors >= 0")
        if self.projector not in PROJECTORS:
            raise ValueError(f"unknown projector {self.projector!r} (known: {', '.join(PROJECTORS)})")

    @property
    def num_detectors(self) -> int:
        return self.detectors or math.ceil(self.size * math.sqrt(2))

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return self.angles, self.num_detectors

    def angle_values(self) -> np.ndarray:
        return np.linspace(0.0, np.pi, self.angles, endpoint=False)

    def astra_geometries(self):
        import astra

        vol = astra.create_vol_geom(self.size, self.size)
        proj = astra.create_proj_geom("parallel", 1.0, self.num_detectors, self.angle_values())
        return vol, proj


class _Astra:
    """An ASTRA projector and its data objects, freed on exit."""

    def __init__(self, geom: ParallelBeam, gpu: bool = False):
        import astra

        self.astra = astra
        self.vol, self.proj = geom.astra_geometries()
        self.pid = astra.create_projector("cuda" if gpu else geom.projector, self.proj, self.vol)
        self.data: list[int] = []
        self.algs: list[int] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for a in self.algs:
            self.astra.algorithm.delete(a)
        self.astra.data2d.delete(self.data)
        self.astra.projector.delete(self.pid)

    def sino(self, y: np.ndarray | float = 0.0) -> int:
        self.data.append(self.astra.data2d.create("-sino", self.proj, y))
        return self.data[-1]

    def vol_(self, x: np.ndarray | float = 0.0) -> int:
        self.data.append(self.astra.data2d.create("-vol", self.vol, x))
        return self.data[-1]

    def run(self, name: str, sino_id: int, rec_id: int, iterations: int = 1, **options) -> None:
        cfg = self.astra.astra_dict(name)
        cfg.update(ProjectorId=self.pid, ProjectionDataId=sino_id,
                   **{"VolumeDataId" if name == "FP" else "ReconstructionDataId": rec_id})
        if options:
            cfg["option"] = options
        self.algs.append(self.astra.algorithm.create(cfg))
        self.astra.algorithm.run(self.algs[-1], iterations)


def _images(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.reshape(-1, *a.shape[-2:]).astype(np.float32)


def astra_forward(geom: ParallelBeam, x) -> np.ndarray:
    """ASTRA's forward projection of each image: (b, angles, detectors)."""
    out = []
    with _Astra(geom) as a:
        for img in _images(x):
            sid = a.sino()
            a.run("FP", sid, a.vol_(img))
            out.append(a.astra.data2d.get(sid))
    return np.stack(out)


def astra_sirt(geom: ParallelBeam, sino, iterations: int, *, gpu: bool = False, x0=None,
               min_constraint: float | None = None, max_constraint: float | None = None) -> np.ndarray:
    """ASTRA's own SIRT (``SIRT``, or ``SIRT_CUDA`` with ``gpu``) of each
    sinogram (b, angles, detectors) -> (b, n, n)."""
    opts = {k: v for k, v in (("MinConstraint", min_constraint), ("MaxConstraint", max_constraint)) if v is not None}
    out = []
    with _Astra(geom, gpu=gpu) as a:
        starts = _images(x0) if x0 is not None else [0.0] * len(_images(sino))
        for y, start in zip(_images(sino), starts):
            rid = a.vol_(start)
            a.run("SIRT_CUDA" if gpu else "SIRT", a.sino(y), rid, iterations, **opts)
            out.append(a.astra.data2d.get(rid))
    return np.stack(out)


def astra_fbp(geom: ParallelBeam, sino, filter_type: str = "ram-lak") -> np.ndarray:
    """ASTRA's filtered backprojection of each sinogram -> (b, n, n)."""
    out = []
    with _Astra(geom) as a:
        for y in _images(sino):
            rid = a.vol_()
            a.run("FBP", a.sino(y), rid, FilterType=filter_type)
            out.append(a.astra.data2d.get(rid))
    return np.stack(out)


@functools.lru_cache(maxsize=32)
def system_matrix(geom: ParallelBeam):
    """W, ASTRA's projection matrix for the geometry (scipy CSR, float32)."""
    import astra

    with _Astra(geom) as a:
        mid = astra.projector.matrix(a.pid)
        try:
            w = astra.matrix.get(mid).tocsr().astype(np.float32)
        finally:
            astra.matrix.delete(mid)
    return w


def _torch_csr(m, device) -> torch.Tensor:
    import warnings

    m = m.tocsr()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                       torch.from_numpy(m.indices.astype(np.int64)),
                                       torch.from_numpy(m.data.astype(np.float32)), size=m.shape, device=device,
                                       check_invariants=False)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return op._apply(op.w, x, op.sinogram_shape)

    @staticmethod
    def backward(ctx, g):
        op = ctx.op
        return op._apply(op.wt, g, (op.geom.size, op.geom.size)), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, op):
        ctx.op = op
        return op._apply(op.wt, y, (op.geom.size, op.geom.size))

    @staticmethod
    def backward(ctx, g):
        op = ctx.op
        return op._apply(op.w, g, op.sinogram_shape), None


class CTOperator:
    """x (b, 1, n, n) -> A x (b, 1, angles, detectors), batched, on ``device``;
    ``adjoint`` is Aᵀ. Both are differentiable (each one's backward is the
    other), so ``((A(x) - y) ** 2).sum().backward()`` gives 2 Aᵀ(Ax - y)."""

    def __init__(self, geom: ParallelBeam, device: str | torch.device = "cpu", matrix=None):
        """``matrix``: W as scipy sparse, where ASTRA is not installed (saved
        from ``system_matrix`` elsewhere); default: ASTRA's, for ``geom``."""
        self.geom = geom
        self.sinogram_shape = geom.sinogram_shape
        w = system_matrix(geom) if matrix is None else matrix.tocsr().astype(np.float32)
        if w.shape != (geom.angles * geom.num_detectors, geom.size**2):
            raise ValueError(f"a {w.shape} matrix is not the geometry's {geom}")
        self.w, self.wt = _torch_csr(w, device), _torch_csr(w.T, device)
        rows, cols = np.asarray(w.sum(1)).ravel(), np.asarray(w.sum(0)).ravel()
        # ASTRA's SIRT weights: rays and pixels the geometry never touches get 0
        self.row_inv = torch.from_numpy(np.where(rows > 1e-6, 1 / np.maximum(rows, 1e-6), 0).astype(np.float32)).to(device)
        self.col_inv = torch.from_numpy(np.where(cols > 1e-6, 1 / np.maximum(cols, 1e-6), 0).astype(np.float32)).to(device)

    @staticmethod
    def _apply(m: torch.Tensor, v: torch.Tensor, shape) -> torch.Tensor:
        b = v.shape[0]
        out = (m @ v.reshape(b, -1).T.contiguous()).T
        return out.reshape(b, 1, *shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Project.apply(x, self)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return _Backproject.apply(y, self)

    def sirt_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SIRT update of a batch (no constraint: clamp after it for one)."""
        r = (y - self(x)) * self.row_inv.view(1, 1, *self.sinogram_shape)
        return x + self.adjoint(r) * self.col_inv.view(1, 1, self.geom.size, self.geom.size)

    def sirt(self, y: torch.Tensor, iterations: int, x0: torch.Tensor | None = None,
             box: tuple[float, float] | None = None, callback=None) -> torch.Tensor:
        """``iterations`` SIRT steps from ``x0`` (zeros), clamped to ``box``
        after each; ``callback(i, x)`` after step i."""
        x = torch.zeros(y.shape[0], 1, self.geom.size, self.geom.size, device=y.device) if x0 is None else x0
        with torch.no_grad():
            for i in range(1, iterations + 1):
                x = self.sirt_step(x, y)
                if box is not None:
                    x = x.clamp(*box)
                if callback is not None:
                    callback(i, x)
        return x


def add_sinogram_noise(y: torch.Tensor, kind: str, level: float, seed: int, size: int) -> torch.Tensor:
    """Noisy measurements from their own seeded generator.

    ``gaussian``: y + level * max(y) * n per sinogram (``level`` 0.01: "1 %").
    ``poisson``: ``level`` photons per ray before the object (I0); a pixel is
    1/size of the object's width, so the line integrals y/size are the
    attenuations: counts ~ Poisson(I0 exp(-y/size)), and the measurement is
    -size log(max(counts, 1) / I0). ``none``: y itself."""
    if kind == "none" or level == 0:
        return y.clone()
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        peak = y.flatten(1).amax(1).view(-1, 1, 1, 1)
        return y + level * peak * torch.randn(y.shape, generator=g).to(y.device)
    if kind == "poisson":
        expected = level * torch.exp(-y.cpu().double() / size)
        counts = torch.poisson(expected, generator=g).clamp_min(1.0)
        return (-size * torch.log(counts / level)).float().to(y.device)
    raise ValueError(f"unknown sinogram noise {kind!r} (known: none, gaussian, poisson)")
