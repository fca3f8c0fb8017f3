"""Recurrent forecasters: a scaler, an encoder cell chosen by name, and a head.

Every model maps raw inputs ``x: (batch, time, features)`` (targets first, then
covariates) to raw forecasts ``(batch, horizon, targets)``. Scaling is part of
the module, so the exported ONNX graph takes and returns raw units.

Heads:
- ``direct``  many-to-one encoder; the forecast is read from the encoder outputs
  of the last ``horizon`` steps with one shared linear layer (``readout="steps"``)
  or from the last hidden state with a linear layer to ``horizon x targets``
  (``readout="last"``);
- ``seq2seq`` encoder-decoder (many-to-many): the decoder starts from the
  encoder state and feeds each prediction back in;
- ``mlp``     one-to-one feed-forward baseline on the flattened window, no recurrence.

Options: ``skip_lag`` adds the seasonal naive read from the input window to the
head's output, which becomes a correction that starts at zero (``skip_damping``
adds the last seasonal error, damped per step, to that base); an ``Ensemble``
averages separately trained Forecasters (``train.ensemble``) in one module, so
it exports to one ONNX graph.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from training.config import ModelConfig

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def make_cell(name: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.RNNBase:
    """An ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` by name, batch-first."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; choose one of {sorted(CELLS)}") from None
    return cls(
        input_size,
        hidden,
        num_layers=layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,  # torch warns on dropout with one layer
    )


class Scaler(nn.Module):
    """Normalise ``(batch, time, features)`` to ``(x_norm, loc, scale)``.

    ``loc`` and ``scale`` are ``(batch, 1, features)`` (or ``(1, 1, features)``).

    ``window``: each window by its own mean and std over time (instance norm /
    RevIN without the affine part) -- robust to level shifts and trends.
    ``standard``: fixed training-split statistics stored as buffers.
    ``none``: identity.
    """

    def __init__(
        self, mode: str, n_features: int, mean: Any = None, std: Any = None, eps: float = 1e-5
    ) -> None:
        super().__init__()
        if mode not in {"window", "standard", "none"}:
            raise ValueError(f"unknown scaling {mode!r}")
        self.mode = mode
        self.eps = eps
        if mode != "standard":  # statistics are meaningful only for 'standard'; 'none' is identity
            mean = std = None
        mean_t = torch.zeros(n_features) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.ones(n_features) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mode == "standard" and mean is None:
            raise ValueError("standard scaling needs training-split mean and std")
        self.register_buffer("mean", mean_t.reshape(1, 1, n_features))
        self.register_buffer("std", std_t.reshape(1, 1, n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.mode == "window":
            loc = x.mean(dim=1, keepdim=True)  # (batch, 1, features)
            scale = torch.sqrt(((x - loc) ** 2).mean(dim=1, keepdim=True) + self.eps)
        else:  # buffers are zeros/ones for 'none'
            loc, scale = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        return (x - loc) / scale, loc, scale


class DirectHead(nn.Module):
    def __init__(self, cfg: ModelConfig, n_features: int, n_targets: int, horizon: int) -> None:
        super().__init__()
        self.horizon, self.n_targets, self.readout = horizon, n_targets, cfg.readout
        self.encoder = make_cell(cfg.cell, n_features, cfg.hidden, cfg.layers, cfg.dropout)
        out = n_targets if cfg.readout == "steps" else horizon * n_targets
        self.proj = nn.Linear(cfg.hidden, out)

    def last_layer(self) -> nn.Linear:
        return self.proj

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(xn)  # (batch, time, hidden)
        if self.readout == "steps":
            return self.proj(out[:, -self.horizon :])  # (batch, horizon, targets)
        return self.proj(out[:, -1]).unflatten(1, (self.horizon, self.n_targets))


class Seq2SeqHead(nn.Module):
    def __init__(self, cfg: ModelConfig, n_features: int, n_targets: int, horizon: int) -> None:
        super().__init__()
        self.horizon, self.n_targets = horizon, n_targets
        self.encoder = make_cell(cfg.cell, n_features, cfg.hidden, cfg.layers, cfg.dropout)
        self.decoder = make_cell(cfg.cell, n_targets, cfg.hidden, cfg.layers, cfg.dropout)
        self.proj = nn.Linear(cfg.hidden, n_targets)

    def last_layer(self) -> nn.Linear:
        return self.proj

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(xn)
        step = xn[:, -1:, : self.n_targets]  # (batch, 1, targets): last observed targets
        outputs = []
        # A fixed-length Python loop: traced into `horizon` decoder steps in ONNX.
        for _ in range(self.horizon):
            out, state = self.decoder(step, state)
            step = self.proj(out)  # (batch, 1, targets)
            outputs.append(step)
        return torch.cat(outputs, dim=1)  # (batch, horizon, targets)


class MLPHead(nn.Module):
    def __init__(self, cfg: ModelConfig, n_features: int, n_targets: int, horizon: int, length: int) -> None:
        super().__init__()
        self.length, self.horizon, self.n_targets = length, horizon, n_targets
        layers: list[nn.Module] = [nn.Flatten()]
        width = length * n_features
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        layers.append(nn.Linear(width, horizon * n_targets))
        self.net = nn.Sequential(*layers)

    def last_layer(self) -> nn.Linear:
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        return last

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        flat = self.net(xn[:, -self.length :])  # (batch, horizon * targets)
        return flat.unflatten(1, (self.horizon, self.n_targets))


class Forecaster(nn.Module):
    """Scaler + head; ``forward(x: (batch, time, features)) -> (batch, horizon, targets)`` raw."""

    # Buffers of the seasonal skip, registered only when it is on.
    skip_index: torch.Tensor
    skip_phi: torch.Tensor
    skip_steps: torch.Tensor
    skip_mask: torch.Tensor

    def __init__(
        self,
        cfg: ModelConfig,
        n_features: int,
        n_targets: int,
        length: int,
        horizon: int,
        mean: Any = None,
        std: Any = None,
    ) -> None:
        super().__init__()
        if not 0 < n_targets <= n_features:
            raise ValueError("need 0 < targets <= features (targets come first)")
        self.n_targets = n_targets
        self.model_args: dict[str, Any] = {
            "cfg": cfg.model_dump(),
            "n_features": n_features,
            "n_targets": n_targets,
            "length": length,
            "horizon": horizon,
        }
        self.scaler = Scaler(cfg.scaling, n_features, mean, std)
        self.head: nn.Module
        if cfg.head == "direct":
            self.head = DirectHead(cfg, n_features, n_targets, horizon)
        elif cfg.head == "seq2seq":
            self.head = Seq2SeqHead(cfg, n_features, n_targets, horizon)
        elif cfg.head == "mlp":
            self.head = MLPHead(cfg, n_features, n_targets, horizon, length)
        else:
            raise ValueError(f"unknown head {cfg.head!r}")
        self.skip_lag = cfg.skip_lag
        self.gate: nn.Parameter | None = None
        if cfg.skip_lag is not None:
            if length < cfg.skip_lag:
                raise ValueError(
                    f"skip_lag {cfg.skip_lag} needs a window of at least that length, got {length}"
                )
            # Forecast step h repeats the input `skip_lag - (h % skip_lag)` steps from the end.
            self.register_buffer("skip_index", torch.arange(horizon) % cfg.skip_lag, persistent=False)
            if cfg.skip_damping is not None:
                if length <= cfg.skip_lag:
                    raise ValueError(
                        f"skip_damping needs a window of at least skip_lag + 1 = {cfg.skip_lag + 1}, "
                        f"got {length}"
                    )
                # phi is a persistent buffer: "auto" sets it before training (train.fit),
                # and checkpoints and ensembles restore the value chosen.
                phi = 0.0 if cfg.skip_damping == "auto" else float(cfg.skip_damping)
                self.register_buffer("skip_phi", torch.tensor(phi))
                # Step k (1-based) of the forecast adds e * sum_i phi^(k - i*L) over the seasons
                # i = 0..ceil(k/L)-1 that it lies beyond the window (the ARIMA recursion
                # y^[t+k] = y^[t+k-L] + phi^k e): row i holds k - i*L, masked where below 1.
                seasons = -(-horizon // cfg.skip_lag)
                k = torch.arange(1, horizon + 1, dtype=torch.float32)
                shift = torch.stack([k - i * cfg.skip_lag for i in range(seasons)])  # (seasons, horizon)
                self.register_buffer("skip_steps", shift.clamp(min=1.0), persistent=False)
                self.register_buffer("skip_mask", (shift >= 1).float(), persistent=False)
            if cfg.skip_gate:
                self.gate = nn.Parameter(torch.zeros(()))
            else:
                last = self.head.last_layer()
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward_scaled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised forecast and the target loc/scale, each broadcastable to ``(batch, horizon, targets)``.

        Training computes the loss here, in normalised units, so series of
        different sizes weigh the same.
        """
        xn, loc, scale = self.scaler(x)
        nt = self.n_targets
        yn = self.head(xn)
        if self.skip_lag is not None:
            if self.gate is not None:
                yn = self.gate * yn
            yn = self.skip_base(xn) + yn
        return yn, loc[..., :nt], scale[..., :nt]

    def skip_base(self, xn: torch.Tensor) -> torch.Tensor:
        """The seasonal skip's base forecast, ``xn: (batch, time, features)`` normalised ->
        ``(batch, horizon, targets)`` normalised (scaling is affine per target, so the
        seasonal naive and the seasonal error carry over unchanged)."""
        assert self.skip_lag is not None
        nt = self.n_targets
        base = xn[:, -self.skip_lag :, :nt].index_select(1, self.skip_index)
        if hasattr(self, "skip_phi"):
            # The last seasonal error y[t] - y[t-L], carried forward as phi^k. Indexed, not
            # sliced: a slice ending at -L has a symbolic length for torch.export.
            error = (xn[:, -1, :nt] - xn[:, -1 - self.skip_lag, :nt]).unsqueeze(1)  # (batch, 1, targets)
            weight = (torch.pow(self.skip_phi, self.skip_steps) * self.skip_mask).sum(dim=0)  # (horizon,)
            base = base + weight.unsqueeze(-1) * error
        return base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        yn, loc, scale = self.forward_scaled(x)
        return yn * scale + loc


def skip_damping_of(model: nn.Module) -> float | None:
    """The seasonal skip's damping phi as trained (``"auto"`` resolved), or None."""
    first = model.members[0] if isinstance(model, Ensemble) else model
    phi = getattr(first, "skip_phi", None)
    return None if phi is None else round(float(phi), 6)


class Ensemble(nn.Module):
    """Forecasters trained separately (e.g. with different seeds); the forecast is their mean.

    The members share the scaling (same mode and training statistics), so their
    normalised forecasts can be averaged too.
    """

    def __init__(self, members: list[Forecaster]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.n_targets = members[0].n_targets
        self.model_args: dict[str, Any] = {**members[0].model_args, "ensemble": len(members)}

    def forward_scaled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [cast(Forecaster, m).forward_scaled(x) for m in self.members]
        yn = torch.stack([p[0] for p in parts]).mean(dim=0)
        return yn, parts[0][1], parts[0][2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


Model = Forecaster | Ensemble  # what training returns and export takes


def build_model(
    model_cfg: ModelConfig,
    n_features: int,
    n_targets: int,
    length: int,
    horizon: int,
    mean: Any = None,
    std: Any = None,
) -> Forecaster:
    return Forecaster(model_cfg, n_features, n_targets, length, horizon, mean, std)


def rebuild(model_args: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Model:
    """Rebuild a Forecaster or an Ensemble from stored arguments and weights (no pickled modules)."""
    args = dict(model_args)
    cfg = ModelConfig.model_validate(args.pop("cfg"))
    k = args.pop("ensemble", None)
    prefix = "" if k is None else "members.0."
    mean, std = state_dict[prefix + "scaler.mean"].flatten(), state_dict[prefix + "scaler.std"].flatten()
    model: Model
    if k is None:
        model = Forecaster(cfg, **args, mean=mean, std=std)
    else:
        model = Ensemble([Forecaster(cfg, **args, mean=mean, std=std) for _ in range(k)])
    model.load_state_dict(state_dict)
    return model
