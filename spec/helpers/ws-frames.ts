/** One WebSocket frame as parsed back from the bytes a server wrote (RFC 6455 §5.2). */
export interface ParsedFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly masked: boolean;
  /** Bytes of the header: 2, 4 or 10 for a server's unmasked frames. */
  readonly headerLength: number;
  readonly payload: Buffer;
}

/** Parses back-to-back frames; throws when the bytes do not end at a frame boundary. */
export function parseFrames(bytes: Buffer): ParsedFrame[] {
  const frames: ParsedFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 2) throw new Error(`a frame header cut short at ${at}`);
    const first = bytes[at];
    const second = bytes[at + 1];
    let length = second & 0x7f;
    let headerLength = 2;
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2);
      headerLength = 4;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2));
      headerLength = 10;
    }
    const masked = (second & 0x80) !== 0;
    if (masked) headerLength += 4;
    const end = at + headerLength + length;
    if (end > bytes.length) throw new Error(`a frame of ${length} bytes at ${at} runs past the end`);
    frames.push({
      fin: (first & 0x80) !== 0,
      opcode: first & 0x0f,
      masked,
      headerLength,
      payload: bytes.subarray(at + headerLength, end),
    });
    at = end;
  }
  return frames;
}
