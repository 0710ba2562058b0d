"""The pipeline a notebook user would otherwise run, with the notebook's bugs fixed: a
torchvision-style dataset that hands out one PIL image per sample through `ToTensor`, batched by a
`DataLoader`, and two separate `nn.Module` models (same initial weights, same batches) trained by
autograd and `torch.optim.SGD` for full epochs, tracking loss and errors with `.item()` per batch.
After each epoch it does what `run_experiment` does, the notebook's way: test error through a test
`DataLoader`, and each model's centered probe kernel and alignment with an explicit H = I − 11ᵀ/m."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from kalign_core import DigitData, ExperimentConfig
from kalign_core.model import MLP, init_weights

SIDE = 28


class PILDigits(Dataset):
    """Like torchvision's MNIST: uint8 images kept as arrays, one PIL image made per access."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.images = np.rint(x * 255).astype(np.uint8).reshape(-1, SIDE, SIDE)
        self.labels = y
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class ReferencePair:
    """The slow and the regular model as two nn.Modules, trained one batch at a time."""

    def __init__(self, config: ExperimentConfig, data: DigitData, device: torch.device):
        first = MLP(config.width, data.n_classes, data.train_x.shape[1])
        init_weights(first, torch.Generator().manual_seed(config.seed))
        self.models = [first.to(device), copy.deepcopy(first).to(device)]
        self.optimizers = [
            torch.optim.SGD(
                [
                    {"params": model.features.parameters(), "lr": hidden_lr},
                    {"params": model.readout.parameters(), "lr": config.regular_lr},
                ]
            )
            for model, hidden_lr in zip(self.models, (config.slow_lr, config.regular_lr))
        ]
        self.loader = DataLoader(
            PILDigits(data.train_x, data.train_y),
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
        )
        test = PILDigits(data.test_x, data.test_y)
        self.test_loader = DataLoader(test, batch_size=1000)
        # The probe: the first probe_size // k test digits of each class, as one tensor made once.
        per_class = config.probe_size // data.n_classes
        probe = np.concatenate([np.flatnonzero(data.test_y == c)[:per_class] for c in range(data.n_classes)])
        self.probe_x = torch.stack([test[i][0] for i in probe]).view(len(probe), -1).to(device)
        targets = F.one_hot(torch.from_numpy(data.test_y[probe]), data.n_classes).double().to(device)
        m = len(probe)
        self.h = torch.eye(m, dtype=torch.float64, device=device) - 1.0 / m
        self.target_kernel = self.h @ (targets @ targets.T) @ self.h
        self.device = device

    def epoch(self) -> list[tuple[float, float]]:
        """One full training epoch for both models; (mean loss, error %) of each over its batches."""
        totals = [[0.0, 0] for _ in self.models]
        for images, labels in self.loader:
            x, y = images.view(len(images), -1).to(self.device), labels.to(self.device)
            for model, optimizer, total in zip(self.models, self.optimizers, totals):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total[0] += loss.item() * len(y)
                total[1] += (logits.argmax(dim=1) != y).sum().item()
        n = len(self.loader.dataset)
        return [(loss / n, 100.0 * errors / n) for loss, errors in totals]

    @torch.no_grad()
    def evaluate(self) -> list[tuple[float, float, np.ndarray]]:
        """(test error %, alignment, centered probe kernel) of each model."""
        wrong = [0, 0]
        for images, labels in self.test_loader:
            x, y = images.view(len(images), -1).to(self.device), labels.to(self.device)
            for i, model in enumerate(self.models):
                wrong[i] += (model(x).argmax(dim=1) != y).sum().item()
        results = []
        for model, errors in zip(self.models, wrong):
            phi = model.features(self.probe_x).double()
            kernel = self.h @ (phi @ phi.T) @ self.h
            alignment = (kernel * self.target_kernel).sum() / (kernel.norm() * self.target_kernel.norm())
            results.append(
                (100.0 * errors / len(self.test_loader.dataset), alignment.item(), kernel.float().cpu().numpy())
            )
        return results
