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
- ``shift``   sequence-shift (many-to-many): one network trained to predict
  every next step of the window (the input shifted by one, a loss at each
  step), forecasting by rolling forward on its own predictions;
- ``mlp``     one-to-one feed-forward baseline on the flattened window, no recurrence.

Options: ``base_lag`` adds the seasonal naive read from the input window to the
head's output, which becomes a correction that starts at zero (``base_damping``
adds the last seasonal error, damped per step, to that base); an ``Ensemble``
averages separately trained Forecasters (``train.ensemble``) in one module, so
it exports to one ONNX graph.

Every model carries its ``ModelSpec`` (the bundle contract's typed description)
as ``.spec``: the manifest, checkpoints and ``rebuild`` use it as it is.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from service.bundle import calendar
from service.bundle.manifest import InputWindow, Known, ModelSpec, NetworkSpec
from training import bases
from training.data import Dataset

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
    RevIN without the affine part) -- robust to level shifts and trends. The
    std is floored at ``REL_EPS`` times the window's largest magnitude, not at
    an absolute epsilon, so the forecast of ``c * x`` is ``c`` times that of
    ``x`` for any ``c`` (an absolute 1e-5 on the variance put a series of
    millionths 7x off), and it is computed on the window divided by that
    magnitude, so squares of values near 1e19 do not overflow float32. An
    all-zero window gets scale 1.
    ``tie``: the first ``tie`` columns (the coordinates of a position) share one
    scale, their pooled spread, so a turn of the frame does not stretch them apart.
    ``standard``: fixed training-split statistics stored as buffers.
    ``none``: identity.
    """

    # Relative floor of a window's std: a little above float32's resolution (6e-8), so a window
    # that is constant but for rounding is not blown up into noise of size 1.
    REL_EPS = 1e-5

    def __init__(
        self,
        mode: str,
        n_features: int,
        mean: Any = None,
        std: Any = None,
        tie: int = 1,
        fixed: list[int] | None = None,
    ) -> None:
        super().__init__()
        if mode not in {"window", "standard", "none"}:
            raise ValueError(f"unknown scaling {mode!r}")
        self.mode = mode
        self.tie = tie  # window mode: the first `tie` columns share one scale (coordinates of a position)
        fixed = fixed or []  # columns (known inputs) scaled by training statistics in any mode
        if (mode == "standard" or fixed) and mean is None:
            raise ValueError("standard scaling (and known inputs) need training-split mean and std")
        mean_t = torch.zeros(n_features) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.ones(n_features) if std is None else torch.as_tensor(std, dtype=torch.float32)
        keep = torch.zeros(n_features, dtype=torch.bool)
        keep[fixed] = True
        self.fixed: torch.Tensor | None
        self.register_buffer("fixed", keep.reshape(1, 1, n_features) if fixed else None, persistent=False)
        if mode != "standard":  # statistics serve the known inputs only; 'none' is identity otherwise
            mean_t = torch.where(keep, mean_t, torch.zeros_like(mean_t))
            std_t = torch.where(keep, std_t, torch.ones_like(std_t))
        self.register_buffer("mean", mean_t.reshape(1, 1, n_features))
        self.register_buffer("std", std_t.reshape(1, 1, n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.mode == "window":
            loc = x.mean(dim=1, keepdim=True)  # (batch, 1, features)
            size = x.abs().amax(dim=1, keepdim=True)  # (batch, 1, features)
            # An all-zero window has no size to scale by and reads the same whatever the series'
            # units: scale 1, so training's targets after it stay in the data's units (a tiny
            # floor would make them astronomically large).
            if self.tie > 1:  # one size for the tied columns, so their spread is pooled below too
                k = self.tie
                size = torch.cat(
                    [size[..., :k].amax(dim=2, keepdim=True).expand(-1, -1, k), size[..., k:]], 2
                )
            zero = size == 0
            size = torch.where(zero, torch.ones_like(size), size)
            # size * sqrt(var / size^2 + REL_EPS^2): the std floored relative to the window's size
            unit = (x - loc) / size
            var = (unit * unit).mean(dim=1, keepdim=True)
            if self.tie > 1:
                var = torch.cat([var[..., :k].mean(dim=2, keepdim=True).expand(-1, -1, k), var[..., k:]], 2)
            scale = size * torch.sqrt(var + self.REL_EPS**2)
            scale = torch.where(zero, torch.ones_like(scale), scale)
            if self.fixed is not None:  # known inputs: their level matters (a hot day), not the window's
                loc = torch.where(self.fixed, cast(torch.Tensor, self.mean), loc)
                scale = torch.where(self.fixed, cast(torch.Tensor, self.std), scale)
        else:  # buffers are zeros/ones for 'none' but for the known inputs
            loc, scale = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        return (x - loc) / scale, loc, scale


class Heading:
    """The heading frame of a batch of windows (``network.frame = "heading"``): the origin at the
    last position, the x axis along the last step's displacement. Positions are the first two
    columns of ``x: (batch, time, features)``; a window whose last step did not move keeps the
    data's axes. Pure tensor arithmetic (no atan2), so it exports to ONNX as it is."""

    def __init__(self, x: torch.Tensor) -> None:
        self.origin = x[:, -1:, :2]  # (batch, 1, 2)
        d = self.origin - x[:, -2:-1, :2]
        sq = (d * d).sum(dim=2, keepdim=True)  # (batch, 1, 1)
        moving = sq > 0
        # the root of 1 where it did not move: sqrt's slope at 0 would put NaN in input gradients
        norm = torch.sqrt(torch.where(moving, sq, torch.ones_like(sq)))
        self.cos = torch.where(moving, d[..., :1] / norm, torch.ones_like(norm))
        self.sin = torch.where(moving, d[..., 1:] / norm, torch.zeros_like(norm))

    def enter(self, v: torch.Tensor) -> torch.Tensor:
        """Positions ``(batch, steps, 2 + k)`` in the data's axes -> the frame (other columns kept)."""
        dx, dy = v[..., :1] - self.origin[..., :1], v[..., 1:2] - self.origin[..., 1:2]
        return torch.cat([self.cos * dx + self.sin * dy, self.cos * dy - self.sin * dx, v[..., 2:]], dim=2)

    def leave(self, v: torch.Tensor) -> torch.Tensor:
        """Positions ``(batch, steps, 2)`` in the frame -> the data's axes."""
        a, b = v[..., :1], v[..., 1:2]
        return torch.cat([self.cos * a - self.sin * b, self.sin * a + self.cos * b], dim=2) + self.origin


class DirectHead(nn.Module):
    def __init__(self, cfg: NetworkSpec, n_features: int, n_targets: int, horizon: int) -> None:
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
    def __init__(self, cfg: NetworkSpec, n_features: int, n_targets: int, horizon: int) -> None:
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


class ShiftHead(nn.Module):
    """Many-to-many: one recurrent network that, at every step of a sequence, predicts the next
    step's targets; it forecasts by feeding each prediction back in as the next input.

    Trained with the input shifted by one as the target and a loss at every step
    (``teacher``); ``forward`` rolls it on its own outputs for ``horizon`` steps. Each prediction
    is the last value plus a learned change (the projection starts at zero, so the untrained
    model is the naive forecast). Inputs are the targets alone: covariates it could not forecast.
    """

    def __init__(self, cfg: NetworkSpec, n_targets: int, horizon: int) -> None:
        super().__init__()
        self.horizon, self.n_targets = horizon, n_targets
        self.cell = make_cell(cfg.cell, n_targets, cfg.hidden, cfg.layers, cfg.dropout)
        self.proj = nn.Linear(cfg.hidden, n_targets)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def last_layer(self) -> nn.Linear:
        return self.proj

    def teacher(self, seq: torch.Tensor) -> torch.Tensor:
        """``(batch, time, targets)`` normalised -> the prediction of each next step, same shape
        (row ``t`` forecasts ``seq[:, t + 1]``)."""
        out, _ = self.cell(seq)
        return seq + self.proj(out)

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        out, state = self.cell(xn)
        step = xn[:, -1:] + self.proj(out[:, -1:])  # (batch, 1, targets)
        outputs = [step]
        # A fixed-length Python loop: traced into `horizon - 1` cell steps in ONNX.
        for _ in range(self.horizon - 1):
            out, state = self.cell(step, state)
            step = step + self.proj(out)
            outputs.append(step)
        return torch.cat(outputs, dim=1)  # (batch, horizon, targets)


class MLPHead(nn.Module):
    def __init__(self, cfg: NetworkSpec, n_features: int, n_targets: int, horizon: int, length: int) -> None:
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
    """Scaler + base + head; ``forward(x: (batch, time, features)) -> (batch, horizon, targets)`` raw.

    The base (``training.bases``) is a ``(horizon, length)`` matrix applied to the
    normalised window; the head's output is added to it as a correction that
    starts at zero, so the untrained model *is* its base. Without a base the head
    forecasts alone; with head ``none`` the base does.
    """

    base_matrix: torch.Tensor  # (horizon, length), a persistent buffer when the model has a base
    log_base_matrix: torch.Tensor  # (horizon, length): the fitted base's part on the logarithms

    def __init__(self, spec: ModelSpec, mean: Any = None, std: Any = None) -> None:
        super().__init__()
        if spec.ensemble != 1:
            raise ValueError("a Forecaster is one network: build an Ensemble of them")
        self.spec = spec
        cfg = spec.network
        n_features, n_targets = len(spec.features), len(spec.targets)
        length, horizon = spec.input_window.length, spec.horizon
        self.n_targets = n_targets
        self.levels = len(cfg.quantiles)  # interval levels the head learns (direct and mlp only)
        # the head's outputs per step: the point forecast, then each level's lower and upper offset
        outputs = n_targets * (1 + 2 * self.levels)
        self.turns = cfg.frame == "heading"
        # the known inputs: each one's column at the row's own step and its column read ahead
        self.known_now, self.known_lead = known_columns(spec)
        # as index tensors on the model's device too: indexing by a Python list copies the list to
        # the GPU and waits for it, which a CUDA graph cannot capture (training.steps)
        self.now_index: torch.Tensor
        self.lead_index: torch.Tensor
        self.register_buffer("now_index", torch.tensor(self.known_now, dtype=torch.long), persistent=False)
        self.register_buffer("lead_index", torch.tensor(self.known_lead, dtype=torch.long), persistent=False)
        self.scaler = Scaler(
            cfg.scaling,
            n_features,
            mean,
            std,
            tie=2 if self.turns else 1,
            fixed=self.known_now + self.known_lead,
        )
        self.head: nn.Module | None
        if cfg.head == "direct":
            self.head = DirectHead(cfg, n_features, outputs, horizon)
        elif cfg.head == "seq2seq":
            self.head = Seq2SeqHead(cfg, n_features, n_targets, horizon)
        elif cfg.head == "shift":
            self.head = ShiftHead(cfg, n_targets, horizon)
        elif cfg.head == "mlp":
            self.head = MLPHead(cfg, n_features, outputs, horizon, length)
        else:
            self.head = None
        self.has_base = cfg.base_lag is not None or cfg.base is not None
        self.gate: nn.Parameter | None = None
        if self.has_base:
            # A persistent buffer: "auto" damping and the recipe set it before training, and
            # checkpoints, ensembles and the ONNX graph carry the matrix chosen.
            self.register_buffer("base_matrix", torch.from_numpy(self._seasonal_matrix(0.0)).float())
            if cfg.log_share > 0:
                self.register_buffer("log_base_matrix", self.base_matrix.clone())
            if cfg.base_damping is not None and cfg.base_damping != "auto":
                self.base_matrix.copy_(torch.from_numpy(self._seasonal_matrix(float(cfg.base_damping))))
            if self.known_lead:
                # the known inputs' effect on the base's error (training.known): zero, then fitted
                self.known_weight = nn.Parameter(torch.zeros(2 * len(self.known_lead), n_targets))
            if cfg.correction_gate:
                self.gate = nn.Parameter(torch.zeros(()))
            elif self.head is not None:
                last = self.head.last_layer()
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def scale_correction(self, factor: float) -> None:
        """Multiply the head's correction by ``factor`` (exact: the head's output is linear in its
        last layer). ``0.5`` makes the model the mean of its network and its base."""
        if self.head is None or not self.has_base:
            raise ValueError("only a network on a base has a correction to scale")
        last = cast("DirectHead | Seq2SeqHead | ShiftHead | MLPHead", self.head).last_layer()
        with torch.no_grad():
            last.weight.mul_(factor)
            last.bias.mul_(factor)

    def _seasonal_matrix(self, phi: float) -> Any:
        """The hand-written seasonal base (``base_lag``, damped by ``phi``), or naive as a placeholder
        for a fitted base that ``set_base`` or a checkpoint fills in."""
        length, horizon, lag = self.spec.input_window.length, self.spec.horizon, self.spec.network.base_lag
        if lag is None:
            return bases.naive(length, horizon)
        if self.spec.network.base_damping is None:
            return bases.seasonal_naive(length, horizon, lag)
        return bases.damped_seasonal(length, horizon, lag, phi)

    def set_base_damping(self, phi: float) -> None:
        """Fix the seasonal base's damping (``"auto"`` resolved): the matrix and the spec."""
        network = self.spec.network.model_copy(update={"base_damping": round(float(phi), 6)})
        self.spec = self.spec.model_copy(update={"network": network})
        self.base_matrix.copy_(torch.from_numpy(self._seasonal_matrix(float(phi))))

    def set_base(self, name: str, matrix: Any, log_matrix: Any = None) -> None:
        """Use a fitted linear base (``training.bases``): ``matrix`` is ``(horizon, length)``; with a
        ``log_share`` in the spec, ``log_matrix`` forecasts the logarithms for that share."""
        if not self.has_base or self.spec.network.base_lag is not None:
            raise ValueError("set_base needs a model built with network.base (a fitted base)")
        if (log_matrix is not None) != (self.spec.network.log_share > 0):
            raise ValueError("a log_matrix goes with a log_share above 0 in the spec, and only then")
        self.base_matrix.copy_(torch.as_tensor(matrix, dtype=torch.float32))
        if log_matrix is not None:
            self.log_base_matrix.copy_(torch.as_tensor(log_matrix, dtype=torch.float32))
        network = self.spec.network.model_copy(update={"base": name})
        self.spec = self.spec.model_copy(update={"network": network})

    def forward_scaled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised forecast and the target loc/scale, each broadcastable to ``(batch, horizon, targets)``.

        Training computes the loss here, in normalised units, so series of
        different sizes weigh the same. With a heading frame all of it is in the
        frame: ``in_frame`` takes the targets there.
        """
        yn, _, loc, scale = self._forward_parts(Heading(x).enter(x) if self.turns else x)
        return yn, loc, scale

    def in_frame(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Raw targets ``y`` ``(batch, horizon, targets)`` after window ``x`` in the model's frame:
        as they are, or turned into the window's heading frame (``network.frame``)."""
        return Heading(x).enter(y) if self.turns else y

    def _forward_parts(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``forward_scaled``, and the quantile head's raw offsets ``(batch, horizon, 2 * levels *
        targets)`` (None without quantiles)."""
        nt = self.n_targets
        xn, loc, scale = self.scaler(x)
        offsets = None
        if self.head is None:
            yn = self.base(x, xn, loc, scale)
        else:
            out = self.head(xn)
            yn, offsets = out[..., :nt], (out[..., nt:] if self.levels else None)
            if self.has_base:
                if self.gate is not None:
                    yn = self.gate * yn
                yn = self.base(x, xn, loc, scale) + yn
        if self.has_base and self.known_lead:
            yn = yn + self.known_effect(xn)
        return yn, offsets, loc[..., :nt], scale[..., :nt]

    def known_effect(self, xn: torch.Tensor) -> torch.Tensor:
        """The known inputs' part of the forecast, normalised ``(batch, horizon, targets)``: how far
        each known input's value at a forecast step lies from the base's own forecast of it, and
        the same for its square, times ``known_weight`` (``training.known``: a linear effect of the
        input passes through a linear base unchanged, so this is what the base misses)."""
        matrix = self.base_matrix
        now = xn[:, -matrix.shape[1] :].index_select(2, self.now_index)  # (batch, length, known)
        ahead = xn[:, -self.spec.horizon :].index_select(2, self.lead_index)  # (batch, horizon, known)
        deltas = torch.cat([ahead - matrix @ now, ahead * ahead - matrix @ (now * now)], dim=2)
        return deltas @ self.known_weight

    def teacher_scaled(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A shift head's training pair, normalised by the input window ``x`` ``(batch, time,
        targets)`` with ``y`` ``(batch, horizon, targets)`` raw after it: ``(predicted, actual)``,
        each ``(batch, time + horizon - 1, targets)``, the prediction of every next step of the
        whole sequence from the steps before it (teacher forcing)."""
        if not isinstance(self.head, ShiftHead):
            raise ValueError("teacher forcing trains the shift head only")
        if self.turns:
            frame = Heading(x)
            x, y = frame.enter(x), frame.enter(y)
        xn, loc, scale = self.scaler(x)
        seq = torch.cat([xn, (y - loc) / scale], dim=1)
        return self.head.teacher(seq[:, :-1]), seq[:, 1:]

    def forward_scaled_bounds(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(yn, bounds, loc, scale)``: ``forward_scaled`` and the learned bounds, normalised,
        ``(2, levels, batch, horizon, targets)`` (lower, then upper; levels as in
        ``network.quantiles``, increasing).

        Each bound is the point forecast minus (plus) a sum of softplus offsets, one per level up
        to its own: bounds never cross each other or the point forecast, whatever the weights.
        """
        yn, offsets, loc, scale = self._forward_parts(x)
        if offsets is None:
            raise ValueError("this network learns no quantiles (network.quantiles is empty)")
        batch, steps = offsets.shape[0], offsets.shape[1]
        widths = nn.functional.softplus(offsets.reshape(batch, steps, 2, self.levels, self.n_targets))
        widths = widths.cumsum(dim=3).permute(2, 3, 0, 1, 4)  # (2, levels, batch, horizon, targets)
        bounds = torch.stack([yn - widths[0], yn + widths[1]])
        return yn, bounds, loc, scale

    def forward_bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(forecast, bounds)``: ``(batch, horizon, targets)`` and ``(2, levels, batch,
        horizon, targets)`` (``forward_scaled_bounds``, in the data's units)."""
        yn, bounds, loc, scale = self.forward_scaled_bounds(x)
        return yn * scale + loc, bounds * scale + loc

    def base(self, x: torch.Tensor, xn: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The base forecast, normalised: ``x`` raw and ``xn`` normalised ``(batch, time, features)``,
        ``loc``/``scale`` the scaling -> ``(batch, horizon, targets)``. Every base's rows sum to one,
        so the linear part commutes with the affine scaling; the log part (``log_share``) is
        ``exp`` of a base on the raw window's logarithms, normalised after."""
        nt = self.n_targets
        length = self.base_matrix.shape[1]
        linear = torch.matmul(self.base_matrix, xn[:, -length:, :nt])  # (horizon, length) @ (b, length, t)
        share = self.spec.network.log_share
        if share == 0:
            return linear
        logs = torch.matmul(self.log_base_matrix, torch.log(x[:, -length:, :nt]))
        return (1 - share) * linear + share * (torch.exp(logs) - loc[..., :nt]) / scale[..., :nt]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        yn, loc, scale = self.forward_scaled(x)
        y = yn * scale + loc
        return Heading(x).leave(y) if self.turns else y


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
        self.spec = members[0].spec.model_copy(update={"ensemble": len(members)})

    def forward_scaled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [cast(Forecaster, m).forward_scaled(x) for m in self.members]
        yn = torch.stack([p[0] for p in parts]).mean(dim=0)
        return yn, parts[0][1], parts[0][2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)

    def in_frame(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cast(Forecaster, self.members[0]).in_frame(x, y)  # the members share their spec

    def forward_scaled_bounds(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The members' normalised forecasts and learned bounds, averaged (quantile averaging)."""
        parts = [cast(Forecaster, m).forward_scaled_bounds(x) for m in self.members]
        yn = torch.stack([p[0] for p in parts]).mean(dim=0)
        bounds = torch.stack([p[1] for p in parts]).mean(dim=0)
        return yn, bounds, parts[0][2], parts[0][3]

    def forward_bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [cast(Forecaster, m).forward_bounds(x) for m in self.members]
        return torch.stack([p[0] for p in parts]).mean(dim=0), torch.stack([p[1] for p in parts]).mean(dim=0)


Model = Forecaster | Ensemble  # what training returns and export takes


class WithBounds(nn.Module):
    """A quantile-head model as the ONNX graph serves it: ``x -> (forecast, bounds)``."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.spec = model.spec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_bounds(x)


def model_spec(
    network: NetworkSpec,
    features: list[str],
    targets: list[str],
    length: int,
    horizon: int,
    frequency: str | None = None,
    min_length: int | None = None,
    known: Known | None = None,
) -> ModelSpec:
    """The spec of one network: the recurrent heads take any history of at least ``length``
    steps (a dynamic time axis; ``min_length``: a shift or seq2seq head trained to forecast from
    that few); the mlp head exactly ``length``. ``features``: the history's columns; ``known``
    inputs add their columns read ahead (``ModelSpec.lead``)."""
    dynamic = network.head != "mlp"
    shortest = length if min_length is None else min_length
    lead = [] if known is None else calendar.columns(known.calendar) + known.ahead(horizon)
    return ModelSpec(
        network=network,
        input_window=InputWindow(length=length, min_length=shortest, max_length=None if dynamic else length),
        horizon=horizon,
        features=list(features) + lead,
        targets=list(targets),
        frequency=frequency,
        known=known,
    )


def spec_for(
    network: NetworkSpec, ds: Dataset, length: int, horizon: int, min_length: int | None = None
) -> ModelSpec:
    """``model_spec`` of a network on dataset ``ds``: its columns, frequency and known inputs."""
    return model_spec(network, ds.sent, ds.targets, length, horizon, ds.frequency, min_length, ds.known)


def known_columns(spec: ModelSpec) -> tuple[list[int], list[int]]:
    """Positions in ``spec.features`` of each known input's column at the row's step (a future
    column among the sent ones, a calendar column after them) and of its column read ahead."""
    if spec.known is None:
        return [], []
    now = [spec.features.index(c) for c in spec.known.columns]  # the first of each name: the row's own
    lead = list(range(len(spec.features) - len(spec.lead), len(spec.features)))
    return now, lead


def build_model(spec: ModelSpec, mean: Any = None, std: Any = None) -> Forecaster:
    return Forecaster(spec, mean, std)


def rebuild(spec: ModelSpec | dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Model:
    """Rebuild a Forecaster or an Ensemble from its spec and weights (no pickled modules)."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
    k = spec.ensemble
    prefix = "" if k == 1 else "members.0."
    mean, std = state_dict[prefix + "scaler.mean"].flatten(), state_dict[prefix + "scaler.std"].flatten()
    one = spec.model_copy(update={"ensemble": 1})
    model: Model
    if k == 1:
        model = Forecaster(one, mean=mean, std=std)
    else:
        model = Ensemble([Forecaster(one, mean=mean, std=std) for _ in range(k)])
    model.load_state_dict(state_dict)
    return model
