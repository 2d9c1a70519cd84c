// The umbrella header: everything public in libbrain.
#pragma once

#include <brain/config.h>
#include <brain/analysis/analysis.h>
#include <brain/analysis/models.h>
#include <brain/info.h>
#include <brain/csr.h>
#include <brain/dist/dist.h>
#include <brain/dyn.h>
#include <brain/models/channels.h>
#include <brain/models/config.h>
#include <brain/models/init.h>
#include <brain/models/connectivity.h>
#include <brain/models/networks.h>
#include <brain/models/neurons.h>
#include <brain/models/point_neurons.h>
#include <brain/models/rate_models.h>
#include <brain/models/reservoir.h>
#include <brain/models/surrogate.h>
#include <brain/models/synapses.h>
#include <brain/ops.h>
#include <brain/train/bptt.h>
#include <brain/train/datasets.h>
#include <brain/train/readout.h>
