"""The thesis's two inversion tasks, built as one batch.

Task 1: Gaussian-noise tiles -> each digit 0..9, ``restarts`` tiles per digit.
Task 2: a real test digit of class a -> every other class b (90 pairs).
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class TaskBatch:
    x0: torch.Tensor  # (b, c, h, w) initial images
    target: torch.Tensor  # (b,) target classes
    task: torch.Tensor  # (b,) 1 or 2
    source: torch.Tensor  # (b,) source class for task 2, -1 for task 1

    def to(self, device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in (self.x0, self.target, self.task, self.source)))


def task_batch(sources: torch.Tensor, *, restarts: int, init_scale: float, seed: int,
               num_classes: int = 10, task2: bool = True, task2_per_source: int | None = None) -> TaskBatch:
    """sources: (num_classes, c, h, w), one real image per class (task 2).
    ``task2_per_source``: that many seeded random targets per source instead
    of all num_classes - 1."""
    g = torch.Generator().manual_seed(seed)
    shape = sources.shape[1:]
    t1_target = torch.arange(num_classes).repeat(restarts)  # (10 R,)
    t1_x = (0.5 + init_scale * torch.randn((len(t1_target), *shape), generator=g)).clamp(0, 1)
    xs, targets, tasks, srcs = [t1_x], [t1_target], [torch.ones_like(t1_target)], [torch.full_like(t1_target, -1)]
    if task2:
        a, b = torch.meshgrid(torch.arange(num_classes), torch.arange(num_classes), indexing="ij")
        keep = a != b
        a, b = a[keep], b[keep]  # (90,)
        if task2_per_source is not None and task2_per_source < num_classes - 1:
            pick = torch.cat([torch.randperm(num_classes - 1, generator=g)[:task2_per_source] + i * (num_classes - 1)
                              for i in range(num_classes)])
            order = pick.sort().values
            a, b = a[order], b[order]
        xs.append(sources[a])
        targets.append(b)
        tasks.append(torch.full_like(b, 2))
        srcs.append(a)
    return TaskBatch(torch.cat(xs), torch.cat(targets), torch.cat(tasks), torch.cat(srcs))


def pick_sources(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10, seed: int = 0) -> torch.Tensor:
    """One seeded random test image per class: (num_classes, c, h, w)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        idx = (y == c).nonzero().flatten()
        out.append(x[idx[torch.randint(len(idx), (1,), generator=g)].item()])
    return torch.stack(out)
