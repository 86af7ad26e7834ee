export const layers: Array<{ from: string; to: string; step: string }>;
export const sql: Array<{ file: string; step: string }>;
