# expect: batch_size, epochs, lr, dropout_p, linear_out_features
"""Command-line options with defaults, in the style of PyTorch's examples (generated digits)."""
import argparse

import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 100)
        self.dropout = nn.Dropout(0.25)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


def train(model, loader, optimizer):
    model.train()
    for data, target in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(data), target).backward()
        optimizer.step()


def test(model, data, target):
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(data), target).item()


def main():
    parser = argparse.ArgumentParser(description="digits example")
    parser.add_argument("--batch-size", type=int, default=64, help="input batch size")
    parser.add_argument("--epochs", type=int, default=3, help="number of epochs to train")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--log-interval", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    data = torch.randn(600, 64)
    target = data[:, :10].argmax(dim=1)
    loader = DataLoader(TensorDataset(data[:500], target[:500]), batch_size=args.batch_size, shuffle=True)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        train(model, loader, optimizer)
        test_loss = test(model, data[500:], target[500:])
        if epoch % args.log_interval == 0:
            print(epoch, test_loss)
    print("test loss", test_loss)


if __name__ == "__main__":
    main()
