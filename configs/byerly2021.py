"""Byerly, Kalganova and Dear (2021), "No Routing Needed Between Capsules"
(arXiv 2001.09136): the branching model with homogeneous vector capsules.

Command:
  python main.py --workdir=runs/byerly2021 --config=configs/byerly2021.py

As their code (AdamByerly/BMCNNwHFCs) trains its MNIST model: nine unpadded 3x3
convolutions of 32 to 160 filters with a branch after every third
(models.BranchingHVC), Adam at 1e-3 times 0.98 after every epoch, a weight
average of decay 0.999, batches of 120, 300 epochs. Their augmentation differs in
its details from the ones here: rotations of up to 30 degrees (theirs: normal,
clipped, on half the images), shifts within the digit's margin (here: up to 4
pixels), a random width change of up to 1/4 (here: squish of 0.25) and one
4x4 patch erased (here: random erasing of 2-20% on half the images). Every
figure here is the last epoch's, choices on the validation split. Not yet
measured here: 300 epochs are hours on a GPU.
"""

from configs import an2020


def get_config():
  # An et al.'s training recipe (Adam, its decay, weight average, batches) is theirs.
  config = an2020.get_config()
  config.model = 'hvc'
  config.conv_features = (32, 48, 64, 80, 96, 112, 128, 144, 160)  # 28 -> 10
  config.augment_rotation = 30.0
  config.augment_shift = 4
  config.augment_squish = 0.25
  config.augment_erase = 0.5
  config.num_epochs = 300
  return config
