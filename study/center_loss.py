"""Center-loss terms on a batch, the Wen et al. centre update, and the trainer that uses them.

Notation: a batch of B features f (B, D) from the `dense` layer, labels y (B,) in
0..K-1, class centres c (K, D). All terms are batch means, so they do not grow
with batch_size:

    intra(f, y, c)       = 0.5 * mean_i ||f_i - c_{y_i}||^2                    (Wen et al. 2016)
    island(c)            = 1 / (K (K - 1)) * sum_{j != k} (cos(c_j, c_k) + 1)   (Cai et al. 2018)
                           mean over the K(K-1) ordered pairs, so it lies in [0, 2];
                           cos(a, b) = a.b / (max(|a|, EPS) * max(|b|, EPS))
    contrastive(f, y, c) = mean_i 0.5 * ||f_i - c_{y_i}||^2
                                  / (sum_{j != y_i} ||f_i - c_j||^2 + DELTA)     (Qi & Su 2017)
                           DELTA = 1 as in the paper (keeps the ratio finite)

The training loss of every variant is  CE + lambda * intra + mu * inter,  where
`inter` is 0 for `center`, island(c) for `island` and contrastive(f, y, c) for
`contrastive` (set lambda = 0 for the pure Qi & Su loss).

Centres are not trained by the optimizer. After each batch they move by the rule
of Wen et al. 2016, plus (Cai et al. 2018; Qi & Su 2017) the gradient of the
weighted inter term with respect to the centres:
    delta_j = sum_{i: y_i = j} (c_j - f_i) / (1 + n_j)
    c      <- c - alpha * (delta + mu * d inter / d c)
alpha = 0 keeps the centres (the k-means centroids) fixed. The sums run over the global batch
(`batch_size` images): under a distribution strategy every replica gathers all replicas'
features and labels (study.devices), so the centres move once per step, as on one device.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from study.devices import gather, replica_share
from study.model import FEATURE_LAYER, OUTPUT_LAYER, layer_outputs
from study.train import cross_entropy

EPS = 1e-8      # floor on centre norms in the cosine (an all-zero centre would divide by 0)
DELTA = 1.0     # Qi & Su's delta in the contrastive denominator
VARIANTS = ("center", "island", "contrastive")
LOG_NAMES = ("loss", "ce", "intra", "inter", "intra_dist", "inter_dist")


def _own_centres(y, c):
    """c[y]: each sample's class centre, (B,) + (K, D) -> (B, D)."""
    return ops.take(c, ops.cast(y, "int32"), axis=0)


def _sq_dist_to_all(f, c):
    """||f_i - c_j||^2 for every sample and centre: (B, D), (K, D) -> (B, K)."""
    return ops.sum(ops.square(f[:, None, :] - c[None, :, :]), axis=-1)


def intra_term(f, y, c):
    """Wen et al.'s center loss: 0.5 * mean over the batch of ||f_i - c_{y_i}||^2."""
    return 0.5 * ops.mean(ops.sum(ops.square(f - _own_centres(y, c)), axis=-1))


def island_term(c):
    """Cai et al.'s island term: mean over ordered pairs j != k of cos(c_j, c_k) + 1, in [0, 2]."""
    k = ops.shape(c)[0]
    unit = c / ops.maximum(ops.norm(c, axis=-1, keepdims=True), EPS)   # (K, D)
    cos = ops.matmul(unit, ops.transpose(unit))                         # (K, K)
    off_diag = 1.0 - ops.eye(k, dtype=cos.dtype)
    return ops.sum((cos + 1.0) * off_diag) / float(k * (k - 1))


def contrastive_term(f, y, c):
    """Qi & Su's contrastive-center term: batch mean of 0.5 * own distance^2 / (others' + DELTA)."""
    d2 = _sq_dist_to_all(f, c)                                      # (B, K)
    own = ops.one_hot(ops.cast(y, "int32"), ops.shape(c)[0], dtype=d2.dtype)
    intra = ops.sum(d2 * own, axis=-1)                              # (B,)
    inter = ops.sum(d2 * (1.0 - own), axis=-1)                      # (B,)
    return ops.mean(0.5 * intra / (inter + DELTA))


def inter_term(variant: str, f, y, c):
    """The variant's inter-class term: 0 (center), island(c) or contrastive(f, y, c)."""
    if variant == "island":
        return island_term(c)
    if variant == "contrastive":
        return contrastive_term(f, y, c)
    return ops.zeros((), dtype=c.dtype)


def intra_distance(f, y, c):
    """Mean Euclidean distance of the samples to their class centre."""
    return ops.mean(ops.sqrt(ops.sum(ops.square(f - _own_centres(y, c)), axis=-1)))


def inter_distance(c):
    """Mean Euclidean distance over the K(K-1)/2 pairs of distinct centres."""
    k = ops.shape(c)[0]
    d = ops.sqrt(ops.maximum(_sq_dist_to_all(c, c), 0.0))          # (K, K), zero diagonal
    return ops.sum(d) / float(k * (k - 1))                          # each pair counted twice


def center_delta(f, y, c):
    """Wen et al.'s step: delta_j = sum_{i: y_i=j} (c_j - f_i) / (1 + n_j), shape (K, D)."""
    own = ops.one_hot(ops.cast(y, "int32"), ops.shape(c)[0], dtype=c.dtype)  # (B, K)
    n = ops.sum(own, axis=0)[:, None]                                         # (K, 1)
    sum_f = ops.matmul(ops.transpose(own), f)                                 # (K, D)
    return (n * c - sum_f) / (1.0 + n)


def center_update(c, f, y, alpha: float, inter_grad=None):
    """New centres c - alpha * (delta + inter_grad); alpha = 0 returns c unchanged."""
    step = center_delta(f, y, c)
    if inter_grad is not None:
        step = step + inter_grad
    return c - alpha * step


class CenterLossTrainer(keras.Model):
    """Wraps the base CNN: trains it with CE + lambda*intra + mu*inter and moves the centres.

    The base model's weights are shared, not copied: after fit() the base model
    (a plain Sequential) is the trained network. Logs: loss (total), ce, intra,
    inter, accuracy, intra_dist, inter_dist (val_<k> on the validation split).
    """

    def __init__(self, base, centers, variant: str, lam: float, mu: float, alpha: float,
                 label_smoothing: float = 0.0, **kwargs):
        super().__init__(name="center_loss_trainer", **kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r}; allowed: " + ", ".join(VARIANTS))
        self.net = layer_outputs(base, [FEATURE_LAYER, OUTPUT_LAYER])  # x -> (B, 512), (B, 10)
        self.centers = keras.Variable(ops.convert_to_tensor(centers, "float32"), trainable=False,
                                      name="centers", aggregation="only_first_replica")  # (K, 512)
        # every replica computes the same new centres (from the gathered global batch): one is kept
        self.variant, self.lam, self.mu, self.alpha = variant, float(lam), float(mu), float(alpha)
        self.cross_entropy = cross_entropy(label_smoothing)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in LOG_NAMES}
        self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        """Our trackers only, so Keras resets them each epoch and logs exactly these."""
        return [*self.trackers.values(), self.acc]

    def call(self, x, training=False):
        """Class probabilities of the base model."""
        return self.net(x, training=training)[1]

    def _terms(self, f, probs, y, c):
        """All loss terms and logged quantities of one batch, as scalars; 0 for an empty batch (a
        replica's share of a last batch smaller than the replicas), whose means would be NaN."""
        ce = ops.mean(self.cross_entropy(y, probs))
        intra, inter = intra_term(f, y, c), inter_term(self.variant, f, y, c)
        terms = {"loss": ce + self.lam * intra + self.mu * inter, "ce": ce, "intra": intra,
                 "inter": inter, "intra_dist": intra_distance(f, y, c), "inter_dist": inter_distance(c)}
        return {k: ops.where(ops.shape(y)[0] > 0, v, 0.0) for k, v in terms.items()}

    def _log(self, terms, y, probs):
        n = ops.cast(ops.shape(y)[0], "float32")  # weight by batch size, as Keras's own loss tracker
        for k, tracker in self.trackers.items():
            tracker.update_state(terms[k], sample_weight=n)
        self.acc.update_state(y, probs)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        """One optimizer step on CE + lambda*intra + mu*inter, then one centre update from the
        whole global batch (under a distribution strategy: every replica's features)."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = ops.cast(y, "int32")
        c = tf.identity(self.centers.value)  # (K, D): the centres this step's loss and update use
        with tf.GradientTape() as tape:
            f, probs = self.net(x, training=True)
            f = ops.cast(f, "float32")  # the centres are float32 under any dtype policy
            terms = self._terms(f, probs, y, c)
            scaled = terms["loss"] * replica_share(ops.shape(y)[0])  # the replicas' gradients are summed
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self.centers.assign(self._moved_centres(c, gather(ops.stop_gradient(f)), gather(y)))
        return self._log(terms, y, probs)

    def _moved_centres(self, c, f, y):
        """The centres after one update from a global batch of features f (B, D) and labels y (B,)."""
        inter_grad = None
        if self.variant != "center":  # d inter / d c: centres are not trainable, so a tape of their own
            with tf.GradientTape() as tape:
                tape.watch(c)
                inter = inter_term(self.variant, f, y, c)
            inter_grad = self.mu * tape.gradient(inter, c)
        return center_update(c, f, y, self.alpha, inter_grad)

    def test_step(self, data):
        """The same terms on a validation batch, no updates."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = ops.cast(y, "int32")
        f, probs = self.net(x, training=False)
        f = ops.cast(f, "float32")
        return self._log(self._terms(f, probs, y, self.centers.value), y, probs)
