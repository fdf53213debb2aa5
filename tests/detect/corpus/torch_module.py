# expect: hidden, epochs, lr, adam_weight_decay
"""An nn.Module subclass whose widths come from module-level constants."""

import torch
import torch.nn as nn
import torch.nn.functional as F

IN_FEATURES = 12
HIDDEN = 128
EPOCHS = 4
LR = 1e-3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(IN_FEATURES, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


generator = torch.Generator().manual_seed(1)
X = torch.randn(300, IN_FEATURES, generator=generator)
y = X[:, :3].argmax(dim=1)

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=1e-5)
for epoch in range(EPOCHS):
    opt.zero_grad()
    loss = F.cross_entropy(net(X[:240]), y[:240])
    loss.backward()
    opt.step()

with torch.no_grad():
    val_accuracy = (net(X[240:]).argmax(dim=1) == y[240:]).float().mean().item()
print("validation accuracy", val_accuracy)
