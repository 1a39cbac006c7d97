"""The training curves, as a PNG beside the model."""

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(curves: dict, path: str, title: str) -> None:
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(curves["step"], curves["loss"])
    loss_ax.set(xlabel="step", ylabel="training loss (smoothed)", yscale="log", title="loss")
    acc_ax.plot(curves["val_step"], [100 * a for a in curves["val_accuracy"]], marker="o")
    acc_ax.set(xlabel="step", ylabel="validation accuracy (%)", title="validation accuracy")
    acc_ax.set_ylim(max(90, min(100 * a for a in curves["val_accuracy"]) - 0.5), 100)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
