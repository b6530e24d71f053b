/**
 * Custom search attributes Ferry's workflows keep current, so the Web UI can filter migrations
 * (e.g. `FerryVmUuid = "…"` or `FerryPhase = "compensating"`). Registered by `ferry dev up` and `ferry worker`.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SA_VM_UUID = defineSearchAttributeKey('FerryVmUuid', SearchAttributeType.KEYWORD);
export const SA_VM_NAME = defineSearchAttributeKey('FerryVmName', SearchAttributeType.KEYWORD);
export const SA_SOURCE = defineSearchAttributeKey('FerrySource', SearchAttributeType.KEYWORD);
export const SA_TARGET = defineSearchAttributeKey('FerryTarget', SearchAttributeType.KEYWORD);
export const SA_PHASE = defineSearchAttributeKey('FerryPhase', SearchAttributeType.KEYWORD);

/** name → Temporal CLI type name, for `--search-attribute NAME=Keyword` and the operator API. */
export const FERRY_SEARCH_ATTRIBUTES: Record<string, 'Keyword'> = {
  FerryVmUuid: 'Keyword',
  FerryVmName: 'Keyword',
  FerrySource: 'Keyword',
  FerryTarget: 'Keyword',
  FerryPhase: 'Keyword',
};
