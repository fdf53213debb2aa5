# expect: linear_out_features, dropout_p, sgd_lr, sgd_momentum, dataloader_batch_size, epochs
"""A two-layer PyTorch classifier built with nn.Sequential, trained with SGD on generated data."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(512, 20)
y = (X[:, :5].sum(dim=1) > 0).long()
train = TensorDataset(X[:400], y[:400])
valid = TensorDataset(X[400:], y[400:])
train_loader = DataLoader(train, batch_size=32, shuffle=True)
valid_loader = DataLoader(valid, batch_size=256)

model = nn.Sequential(
    nn.Linear(20, 64),
    nn.ReLU(),
    nn.Dropout(0.2),
    nn.Linear(64, 2),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(5):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = sum(loss_fn(model(xb), yb).item() for xb, yb in valid_loader)
    print(f"epoch {epoch}: validation loss {val_loss:.4f}")
