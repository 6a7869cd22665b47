"""gradcam@<name>: Grad-CAM heat maps per class on conv2d_4 and their faithfulness.

Usage: python -m stages.gradcam {baseline|center_loss}
Reads params.yaml (seed, gradcam.*), models/<name>.keras, data/test.npz, data/classes.json.
Writes plots/gradcam/<name>/grid.png (a row per class, gradcam.images_per_class test
images each: original, predicted-class overlay, true-class overlay; misclassified
titles in red), plots/gradcam/<name>/details.json (deletion/insertion AUC of the
predicted-class maps and of a seeded random ranking, averaged over the grid's images) and
its headline plots/gradcam/<name>/metrics.json (<name>.deletion_auc, <name>.insertion_auc).
"""
import numpy as np

from study import paths
from study.data import class_names, load_split, preprocess
from study.files import pick, save_figure, write_metrics
from study.stage import run_model_stage

HEADLINE = ("deletion_auc", "insertion_auc")    # of metrics.json; details.json has them all
PREDICT_BATCH = 256                              # images per model call (a curve has auc_steps + 1)


def main(params: dict, name: str) -> dict:
    """Draw the grid and write the faithfulness metrics of one model; return the metrics."""
    from study.gradcam import grad_cam, pick_images
    from study.model import load_trained
    from study.gradcam_plots import grid_figure
    from study.faithfulness import faithfulness

    cfg, seed = params["gradcam"], params["seed"]
    x, y = load_split("test")
    classes = class_names()
    idx = pick_images(y, cfg["images_per_class"], seed, len(classes))  # (10, k)
    model = load_trained(name, x.shape[1], len(classes))
    images = preprocess(x[idx.ravel()])                                # (10k, 32, 32, 3)
    labels = y[idx.ravel()].astype(int)

    def predict(batch):  # (M, 10) probabilities, PREDICT_BATCH images per call: memory stays bounded
        return np.concatenate([model(batch[i:i + PREDICT_BATCH], training=False).numpy()   # at any auc_steps
                               for i in range(0, len(batch), PREDICT_BATCH)])
    pred = predict(images).argmax(1)
    heat_pred, heat_true = grad_cam(model, images, pred), grad_cam(model, images, labels)
    shape, hw = idx.shape, heat_pred.shape[1:]                         # (10, k), (32, 32)
    fig = grid_figure(x[idx], heat_pred.reshape(*shape, *hw), heat_true.reshape(*shape, *hw),
                      labels.reshape(shape), pred.reshape(shape), classes,
                      title=f"{name}: Grad-CAM on conv2d_4 (image | predicted | true class)")
    out = paths.gradcam_dir(name)
    save_figure(fig, out / "grid.png")
    metrics = faithfulness(predict, images, heat_pred, pred, cfg["auc_steps"], seed)
    write_metrics(out, metrics, pick(metrics, HEADLINE), name)
    print(f"{name}: deletion AUC {metrics['deletion_auc']:.3f} (random {metrics['random_deletion_auc']:.3f}), "
          f"insertion AUC {metrics['insertion_auc']:.3f} (random {metrics['random_insertion_auc']:.3f})")
    return metrics


if __name__ == "__main__":
    run_model_stage(main)
