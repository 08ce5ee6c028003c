"""Networks: the VGG feature stacks, the input preprocessing of each weight source, the AdaIN decoder."""
