// handgrad's distributed API (`import { distributed } from 'handgrad'`): process groups on LibTorch's
// c10d (Gloo) that PyTorch Python ranks can join.
export { allGather, allGatherSync, allReduce, allReduceSync, barrier, barrierSync, broadcast, broadcastSync, DEFAULT_BUCKET_BYTES, destroy, groupInfo, init, initSync, isInitialized } from './group';
export type { CollectiveOptions, GroupInfo, ReduceOpName } from './group';
export type { CollectiveArray } from './binding';
export { DEFAULT_TIMEOUT_MS, type InitOptions } from './options';
