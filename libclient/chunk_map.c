#include "chunk_map.h"

_Atomic uint8_t hk_chunk_map[HK_CHUNKS];
