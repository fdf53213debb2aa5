# expect: linear_out_features, leakyrelu_negative_slope, rmsprop_lr, rmsprop_momentum, epochs
"""Regression with batch normalisation after the hidden layer; the metric is reported explicitly."""

import torch
from torch import nn

import optml.detect

EPOCHS = 6

torch.manual_seed(3)
X = torch.randn(400, 10)
y = X @ torch.linspace(-1, 1, 10) + 0.1 * torch.randn(400)

model = nn.Sequential(
    nn.Linear(10, 32),
    nn.BatchNorm1d(32),
    nn.LeakyReLU(0.05),
    nn.Linear(32, 1),
)
optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.5)
for epoch in range(1, EPOCHS + 1):
    model.train()
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(X[:320]).squeeze(1), y[:320])
    loss.backward()
    optimizer.step()

model.eval()
with torch.no_grad():
    holdout_mse = nn.functional.mse_loss(model(X[320:]).squeeze(1), y[320:]).item()
optml.detect.report(holdout_mse)
