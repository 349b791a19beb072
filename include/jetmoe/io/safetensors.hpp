// jetmoe/io/safetensors.hpp — the safetensors format: reading (safetensors_file) and writing
// (safetensors_writer). Include this, or one of the two headers alone.
#pragma once

#include "jetmoe/io/safetensors_format.hpp"
#include "jetmoe/io/safetensors_reader.hpp"
#include "jetmoe/io/safetensors_writer.hpp"
