# expect: conv2d_out_channels, linear_out_features, adam_lr, epochs
"""A small CNN on 8x8 generated images: a conv width feeds the next conv, a linear width the head."""

import torch
from torch import nn, optim

torch.manual_seed(0)
images = torch.randn(256, 1, 8, 8)
labels = (images.mean(dim=(1, 2, 3)) > 0).long()


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3),  # 8x8 -> 6x6
            nn.ReLU(),
            nn.Conv2d(16, 32, 3),  # 6x6 -> 4x4; its width is fixed by the flatten below
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        return self.head(self.features(x))


model = SmallCNN()
optimizer = optim.Adam(model.parameters(), lr=0.003)
criterion = nn.CrossEntropyLoss()
for epoch in range(3):
    optimizer.zero_grad()
    loss = criterion(model(images[:200]), labels[:200])
    loss.backward()
    optimizer.step()

with torch.no_grad():
    test_loss = criterion(model(images[200:]), labels[200:]).item()
print("test loss", test_loss)
