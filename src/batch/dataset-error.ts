/** A dataset that cannot be read: the message is one line naming the file (and line) and what to fix. */
export class DatasetError extends Error {}
