# expect: linear_out_features, linear_out_features_2, adamw_lr, adamw_weight_decay, dataloader_batch_size, epochs
"""Training factored into functions, as in many PyTorch examples; three tied widths."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(600, 8, generator=g)
    y = torch.sin(X[:, 0]) + X[:, 1] ** 2
    return TensorDataset(X[:500], y[:500]), TensorDataset(X[500:], y[500:])


def build():
    return nn.Sequential(
        nn.Linear(8, 48), nn.Tanh(), nn.Linear(48, 24), nn.Tanh(), nn.Linear(24, 1)
    )


def evaluate(model, dataset):
    X, y = dataset.tensors
    with torch.no_grad():
        return nn.functional.mse_loss(model(X).squeeze(1), y).item()


train_set, valid_set = make_data()
model = build()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
loader = DataLoader(train_set, batch_size=64, shuffle=True)
for epoch in range(8):
    for xb, yb in loader:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(xb).squeeze(1), yb).backward()
        optimizer.step()
valid_loss = evaluate(model, valid_set)
print(valid_loss)
