"""Whole training iterations equal to the originals': K steps from the same weights and the same draws.

Each fixture in tests/fixtures/iterations/ was made by running the original project's own training code
(the `make_<family>.py` beside it, given a checkout) from stored random weights, recording its reals,
latents and noise and every variable (weights, Adam slots, averaged generator) after each step. Our
trainer replays those inputs through its test hook; every variable must agree after every step.
"""
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from vgrow_tf.training.options import make_options

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "iterations")
TOLERANCE = 1e-4


def rel_diff(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def load_fixture(name):
    path = os.path.join(FIXTURES, f"{name}.npz")
    data = np.load(path)
    return json.loads(str(data["config"])), data


def worst_by_group(pairs):
    """{group: (max relative difference, variable)} for pairs of (group, name, ours, theirs[, scale]): the
    difference is relative to max |theirs|, or to `scale` where one is given."""
    worst = {}
    for group, name, ours, theirs, *scale in pairs:
        assert np.shape(ours) == np.shape(theirs), name
        diff = rel_diff(ours, theirs) if not scale else float(np.abs(np.subtract(ours, theirs)).max() / scale[0])
        if diff >= worst.get(group, (-1.0, ""))[0]:
            worst[group] = (diff, name)
    return worst


def assert_report(report, looser=None):
    """Prints the per-step worst differences (report: one worst_by_group result per step) and asserts each
    group within TOLERANCE, or within `looser[group]` where a test explains why that group needs more."""
    print(json.dumps([{g: f"{d:.2e}" for g, (d, _) in step.items()} for step in report]))
    for k, step in enumerate(report):
        for group, (diff, name) in step.items():
            limit = (looser or {}).get(group, TOLERANCE)
            assert diff <= limit, f"iteration {k + 1}: {group} of {name} differs by {diff:.2e}"


# --- VGrow-PG (gefeiwang/PGVGrow train.py) --------------------------------------------------------

def _vgrow_pg_pairs(trainer, state):
    """(group, name, ours, original) for G, Gs, D and both Adams' m, v and step count."""
    from vgrow_tf.interop import pgvgrow_checkpoint as ckpt
    nets = trainer.networks()
    pairs = []
    for net, weight, name in ckpt.weight_names(nets):
        pairs.append(("Gs (EMA)" if net == "Gs" else "weights", name, weight.numpy(), state[name]))
    for net, optimizer in (("G", trainer.opt_g), ("D", trainer.opt_d)):
        first, second = ckpt.ADAM_SLOTS[net]
        for weight in nets[net].trainable_variables:
            name = ckpt.original_name(net, weight.path.split("/", 1)[1])
            index = optimizer._get_variable_index(weight)
            pairs.append(("adam m", name, optimizer._momentums[index].numpy(), state[f"{name}/{first}"]))
            pairs.append(("adam v", name, optimizer._velocities[index].numpy(), state[f"{name}/{second}"]))
        power = ckpt.ORIGINAL_BETA2 ** (int(optimizer.iterations.numpy()) + 1)
        pairs.append(("adam steps", net, power, state[ckpt.ADAM_BETA2_POWER[net]]))
    return pairs


def _vgrow_pg_inputs(config, data, k):
    """The original's draws of iteration k in our hook's form."""
    d_steps, batch, pool = config["T"] * config["U"], config["batch"], config["batch"] * config["pool_size"]
    keys = np.ones([d_steps, pool], np.float32)  # the picked indices get keys 0, 1/pool, ... in pick order
    for step, picked in enumerate(data["sample_index"][k]):
        keys[step, picked] = np.arange(batch) / pool
    reals = data[f"reals_{k}"].astype(np.float32) / 127.5 - 1.0
    return dict(reals=tf.constant(reals), z=tf.constant(data["z"][k]), pool_keys=tf.constant(keys),
                gp_u=tf.constant(data["mix"][k].reshape(d_steps, batch, 1, 1, 1)))


def test_vgrow_pg_iterations_equal_pgvgrow():
    """Stable phase, fade and next phase (lod 1, 1, 1, 0.5, 0, 0) with both Adam resets; Jef divergence,
    pool of 2 batches, T=2 particle moves, L=2 G steps, gradient penalty, Gs average."""
    from vgrow_tf.interop import pgvgrow_checkpoint as ckpt
    from vgrow_tf.models import vgrow_pg
    config, data = load_fixture("vgrow_pg")
    options = make_options("vgrow_pg", divergence=config["divergence"], z_dim=config["z_dim"],
                           fmaps=config["fmaps"], dur_nimg=config["dur_nimg"], pool_size=config["pool_size"],
                           T=config["T"], U=config["U"], L=config["L"], batch_size=config["batch"])
    info = types.SimpleNamespace(path="(fed by the test)", resolution=config["resolution"],
                                 levels=[4, config["resolution"]], channels=config["channels"])
    trainer = vgrow_pg.Trainer(options, tf.distribute.get_strategy(), info)
    for _, weight, name in ckpt.weight_names(trainer.networks()):
        weight.assign(data[f"s0/{name}"])
    per_iteration = config["T"] * config["U"] * config["batch"]
    report = []
    for k in range(config["iterations"]):
        trainer.train_iteration(k * per_iteration, inputs=_vgrow_pg_inputs(config, data, k))
        assert trainer.cur_lod == pytest.approx(float(data["lod"][k]))
        state = {name[len(f"s{k + 1}/"):]: data[name] for name in data.files if name.startswith(f"s{k + 1}/")}
        report.append(worst_by_group(_vgrow_pg_pairs(trainer, state)))
    assert_report(report)


# --- MSG-StyleGAN (akanimax/msg-stylegan-tf training_loop + loss + tflib.Optimizer) -----------------

class _FedDraws:
    """Stands in for the trainer's `rng` and G's noise source: each iteration's D-step and G-step draws
    come from variables the test fills before the step (index 0: D step, 1: G step)."""

    def __init__(self, trainer, config):
        b, g = config["batch"], trainer.G
        self.z = tf.Variable(tf.zeros([2, b, config["latent_size"]]))
        self.noise = [tf.Variable(tf.zeros([2, b] + list(c.shape[1:]))) for c in g.noise_consts]
        self.normal_calls = 0

    def fill(self, data, k):
        self.z.assign(np.stack([data["d/z"][k], data["g/z"][k]]))
        for i, v in enumerate(self.noise):  # NCHW [B, 1, r, r] -> NHWC [B, r, r, 1]
            v.assign(np.stack([data[f"{p}/noise{i}"][k].transpose(0, 2, 3, 1) for p in ("d", "g")]))

    # the Generator interface the trainer uses: normal (z: D step, then G step), make_seeds, uniform
    def normal(self, shape):
        phase = self.normal_calls % 2
        self.normal_calls += 1
        return self.z[phase]

    def make_seeds(self, count):  # the "seed" [phase, 0] selects the noise of the step
        return tf.constant([[(self.normal_calls - 1) % 2], [0]], tf.int64)  # after this step's normal()

    def uniform(self, shape, *args, **kwargs):
        return tf.zeros(shape)

    def noise_of(self, i, batch, noise_seed, randomize_noise, dtype):
        return tf.cast(tf.gather(self.noise[i], noise_seed[0]), dtype)


def _msg_pairs(trainer, data, k):
    from vgrow_tf.interop import msg_stylegan_pickle as pickle_io
    tables = {"G": pickle_io.generator_variables(trainer.G), "Gs": pickle_io.generator_variables(trainer.Gs),
              "D": pickle_io.discriminator_variables(trainer.D, trainer.arch["channels"])}
    optimizers = {"G": trainer.opt_g, "D": trainer.opt_d}
    pairs = []
    for net, table in tables.items():
        trainable = {id(v) for v in getattr(trainer, net).trainable_variables}
        for name, var, to_ours, _ in table:
            stored, ours = to_ours(data[f"s{k}/{net}/{name}"]), var.numpy()
            group = "dlatent_avg" if name == "dlatent_avg" else ("Gs (EMA)" if net == "Gs" else "weights")
            if net == "Gs" and name == "dlatent_avg":
                group = "dlatent_avg (Gs)"
            pairs.append((group, f"{net}/{name}", ours, stored))
            if net in optimizers and id(var) in trainable:
                opt = optimizers[net]
                index = opt._get_variable_index(var)
                pairs.append(("adam m", f"{net}/{name}", opt._momentums[index].numpy(),
                              to_ours(data[f"s{k}/{net}/{name}/m"])))
                pairs.append(("adam v", f"{net}/{name}", opt._velocities[index].numpy(),
                              to_ours(data[f"s{k}/{net}/{name}/v"])))
    return pairs


def test_msg_stylegan_iterations_equal_original():
    """D step (logistic + R1 with gamma 10) with the Gs average, G step (non-saturating), dlatent_avg
    twice, Adam (beta1 0, beta2 0.99), on the original's reals, latents and per-layer noise."""
    from vgrow_tf.interop import msg_stylegan_pickle as pickle_io
    from vgrow_tf.models import msg_gan
    config, data = load_fixture("msg_stylegan")
    options = make_options("msg_stylegan", z_dim=config["latent_size"], fmap_base=config["fmap_base"],
                           fmap_max=config["fmap_max"], mapping_layers=config["mapping_layers"],
                           mapping_fmaps=config["mapping_fmaps"], mbstd_group_size=config["mbstd_group_size"],
                           batch_size=config["batch"], learning_rate=config["lrate"])
    res = config["resolution"]
    info = types.SimpleNamespace(path="(fed by the test)", resolution=res, levels=[4, 8, res],
                                 channels=config["channels"], num_images=16)
    trainer = msg_gan.Trainer(options, tf.distribute.get_strategy(), info)
    for net, table in (("G", pickle_io.generator_variables(trainer.G)),
                       ("Gs", pickle_io.generator_variables(trainer.Gs)),
                       ("D", pickle_io.discriminator_variables(trainer.D, config["channels"]))):
        for name, var, to_ours, _ in table:
            var.assign(to_ours(data[f"s0/{net}/{name}"]))
    fed = _FedDraws(trainer, config)
    trainer.rng = fed
    object.__setattr__(trainer.G, "_noise", fed.noise_of)
    reals = data["reals"].transpose(0, 1, 3, 4, 2).astype(np.float32) / 127.5 - 1.0  # NCHW -> NHWC
    trainer._iterator_obj = iter(tf.data.Dataset.from_tensor_slices({"image": reals}))
    report = []
    for k in range(config["iterations"]):
        fed.fill(data, k)
        trainer.train_iteration(k * config["batch"])
        report.append(worst_by_group(_msg_pairs(trainer, data, k + 1)))
    assert_report(report)


# --- GLO (clvrai/Generative-Latent-Optimization-Tensorflow trainer.py run_single_step) ------------

def _glo_variables(trainer, blocks):
    """[(group, original name, our variable)] for the generator's weights and BatchNorm statistics."""
    from vgrow_tf.interop.glo_checkpoint import bn_scope
    out = []
    for k in range(1, blocks + 1):
        conv = trainer.G.convs[k - 1]
        out += [("weights", f"g/deconv{k}/conv2d/w", conv.kernel), ("weights", f"g/deconv{k}/conv2d/biases", conv.bias)]
        if k < blocks:
            bn = trainer.G.bns[k - 1]
            out += [("weights", f"{bn_scope(k)}/{name}", getattr(bn, name)) for name in ("gamma", "beta")]
            out += [("bn moving", f"{bn_scope(k)}/{name}", getattr(bn, name))
                    for name in ("moving_mean", "moving_variance")]
    return out


def test_glo_steps_equal_reference(monkeypatch):
    """The reference's step: Adam on G (lr 1e-3, clip by global norm 20) through the local-moment loss
    with BatchNorm in training mode, then z <- z - alpha * grad at the updated G, onto the unit sphere."""
    from vgrow_tf.models import glo
    config, data = load_fixture("glo")
    monkeypatch.setattr(glo, "reference_widths", lambda *args, **kwargs: list(config["widths"]))
    monkeypatch.setattr(glo, "read_images", lambda *args, **kwargs: np.zeros([1, 1, 1, 1], np.float32))
    options = make_options("glo", glo_arch="reference", loss="local_moment", glo_optimizer="adam",
                           z_update="after_g", alpha=config["alpha"], learning_rate=config["learning_rate"],
                           batch_size=config["batch"], z_dim=config["z_dim"], init="gaussian")
    info = types.SimpleNamespace(path="(fed by the test)", resolution=config["resolution"],
                                 levels=[config["resolution"]], channels=config["channels"],
                                 num_images=config["num_images"])
    trainer = glo.Trainer(options, tf.distribute.get_strategy(), info)
    blocks = len(config["widths"])
    variables = _glo_variables(trainer, blocks)
    for _, name, var in variables:
        var.assign(data[f"s0/{name}"])
    trainer.latents.assign(data["s0/codes"])
    rows = data["batches"]
    images = data["images"][rows].astype(np.float32) / 127.5 - 1.0
    trainer._iterator = iter(tf.data.Dataset.from_tensor_slices({"image": images, "index": rows}))
    report = []
    for k in range(config["steps"]):
        trainer.train_iteration(k * config["batch"])
        state = lambda name: data[f"s{k + 1}/{name}"]  # noqa: E731
        pairs = [(group, name, var.numpy(), state(name)) for group, name, var in variables]
        pairs.append(("codes", "codes", trainer.latents.numpy(), state("codes")))
        opt = trainer.opt_g
        for group, name, var in variables:
            if group == "weights":
                index = opt._get_variable_index(var)
                pairs.append(("adam m", name, opt._momentums[index].numpy(), state(f"g_optimizer_loss/{name}/Adam")))
                pairs.append(("adam v", name, opt._velocities[index].numpy(),
                              state(f"g_optimizer_loss/{name}/Adam_1")))
        pairs.append(("adam steps", "beta1_power", 0.9 ** (int(opt.iterations.numpy()) + 1),
                      state("g_optimizer_loss/beta1_power")))
        report.append(worst_by_group(pairs))
    # The local-moment loss is an L1 loss: gradient elements where prediction and target moments nearly
    # agree flip with rounding. Our own trainer, its start weights perturbed by 1e-7 relative, moves
    # Adam's m by up to 1.0e-4 relative in these 5 steps; against the reference it is 1.45e-4.
    assert_report(report, looser={"adam m": 3e-4})


# --- SCoGAN (MarkusHald/SCoGAN SCoGANTrainer.train) ------------------------------------------------

class _FedNoise:
    """Stands in for the SCoGAN trainer's `rng`: its latents are each iteration's stored draws (index 0:
    D step, 1: G step), filled before the step; the WGAN-GP mixing weights and dropout seeds are zeros
    (the fixture's loss is cross-entropy and its dropout is off)."""

    def __init__(self, config):
        self.z = tf.Variable(tf.zeros([2, config["batch"], config["z_dim"]]))
        self.z_calls = 0

    def uniform(self, shape, minval=0.0, maxval=1.0):
        if list(shape) == list(self.z.shape[1:]):
            self.z_calls += 1
            return self.z[(self.z_calls - 1) % 2]
        return tf.zeros(shape)

    def uniform_full_int(self, shape, dtype):
        return tf.zeros(shape, dtype)


def test_scogan_iterations_equal_original(monkeypatch):
    """D1 then D2 step (sigmoid cross-entropy), then G1 and G2 steps, on the original's reals and
    latents; BN statistics of both generators updated in both steps; one Adam for D1+D2 and one for
    G1+G2 (`--scogan_adam shared`), whose shared step count makes D2's and G2's bias correction differ
    from D1's and G1's."""
    from vgrow_tf.models import coupled_gan
    config, data = load_fixture("scogan")
    res, batch = config["resolution"], config["batch"]
    info = types.SimpleNamespace(path="(fed by the test)", resolution=res, levels=[res],
                                 channels=config["channels"], num_images=batch, name="fed")
    monkeypatch.setattr(coupled_gan.pairs_lib, "inspect_pair", lambda *args, **kwargs: (info, info))
    options = make_options("scogan", z_dim=config["z_dim"], fmaps=config["fmaps"], d_fmaps=config["d_fmaps"],
                           batch_size=batch, learning_rate=config["learning_rate"], scogan_adam="shared")
    trainer = coupled_gan.Trainer(options, tf.distribute.get_strategy(), info)
    for name in ("D1", "D2"):  # the fixture ran with the discriminators' dropout off
        for block in trainer.nets[name].blocks:
            block.dropout = 0.0
    nets = {name: trainer.nets[name] for name in ("G1", "G2", "D1", "D2")}
    for name, net in nets.items():
        for i, weight in enumerate(net.weights):
            weight.assign(data[f"s0/{name}/{i}"])
    fed = _FedNoise(config)
    trainer.rng = fed
    images = [data[f"images_{d}"].reshape(-1, res, res, config["channels"]).astype(np.float32) / 127.5 - 1.0
              for d in ("a", "b")]
    trainer._iterators = [iter(tf.data.Dataset.from_tensor_slices({"image": x}).batch(batch)) for x in images]
    # A convolution bias right before BatchNorm has zero gradient in exact arithmetic (BN takes out each
    # channel's mean); its Adam slots are rounding noise (|m| ~ 1e-11 beside 1e-5), so they are compared
    # against the largest slot of their network instead of their own size.
    zero_grad = {id(b.op.bias) for g in ("G1", "G2") for b in nets[g].trunk + nets[g].tail
                 if b.bn is not None and b.kind != "dense"}
    report = []
    for k in range(config["iterations"]):
        fed.z.assign(data["z"][k])
        trainer.train_iteration(k * batch)
        state = lambda key: data[f"s{k + 1}/{key}"]  # noqa: E731
        pairs = []
        for name, net in nets.items():
            opt = trainer.opts[trainer.opt_of[name]]
            trainable = {id(v) for v in net.trainable_variables}
            for i, weight in enumerate(net.weights):
                group = "weights" if id(weight) in trainable else "bn moving"
                pairs.append((group, f"{name}/{weight.path}", weight.numpy(), state(f"{name}/{i}")))
                if id(weight) not in trainable:
                    continue
                index = opt._get_variable_index(weight)
                for slot, ours in (("m", opt._momentums[index]), ("v", opt._velocities[index])):
                    theirs = state(f"{name}/{i}/{slot}")
                    pair = [f"adam {slot}", f"{name}/{weight.path}", ours.numpy(), theirs]
                    if id(weight) in zero_grad:
                        pair[0] += " (zero-gradient biases)"
                        pair.append(max(np.abs(state(f"{name}/{j}/{slot}")).max()
                                        for j, w in enumerate(net.weights) if id(w) in trainable))
                    pairs.append(tuple(pair))
        for side in ("d", "g"):
            steps = trainer.opts[side.upper()].iterations.numpy()
            pairs.append(("adam steps", side, steps, state(f"opt_{side}/iterations")))
        report.append(worst_by_group(pairs))
    # G2's last BatchNorm has one channel: its gamma's gradient (|m| 6e-8, beside 1e-5 elsewhere) is a
    # sum that nearly cancels. Our own trainer, its start weights perturbed by 1e-7 relative, moves that
    # m by 2.8e-4 relative in the first iteration; against the original it is 1.8e-4.
    assert_report(report, looser={"adam m": 3e-4})
