// Minimal MessagePack codec for the control protocol (nil, bool, int, float, str, bin, array, map).
// No build step, no dependency: the daemon speaks msgpack-RPC on /control (docs/protocol.md).

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export function encode(value) {
  const out = [];
  const pushU8 = (b) => out.push(b & 0xff);
  const pushU16 = (n) => { pushU8(n >> 8); pushU8(n); };
  const pushU32 = (n) => { pushU8(n >>> 24); pushU8(n >>> 16); pushU8(n >>> 8); pushU8(n); };
  const pushBytes = (bytes) => { for (const b of bytes) out.push(b); };

  function enc(v) {
    if (v === null || v === undefined) { pushU8(0xc0); return; }
    if (v === false) { pushU8(0xc2); return; }
    if (v === true) { pushU8(0xc3); return; }
    if (typeof v === "number") {
      if (Number.isInteger(v) && v >= 0 && v < 2 ** 32) {
        if (v < 128) pushU8(v);
        else if (v < 256) { pushU8(0xcc); pushU8(v); }
        else if (v < 65536) { pushU8(0xcd); pushU16(v); }
        else { pushU8(0xce); pushU32(v); }
      } else if (Number.isInteger(v) && v < 0 && v >= -(2 ** 31)) {
        if (v >= -32) pushU8(v);
        else { pushU8(0xd2); pushU32(v >>> 0); }
      } else {
        const buf = new DataView(new ArrayBuffer(8));
        buf.setFloat64(0, v);
        pushU8(0xcb);
        pushBytes(new Uint8Array(buf.buffer));
      }
      return;
    }
    if (typeof v === "string") {
      const bytes = textEncoder.encode(v);
      const n = bytes.length;
      if (n < 32) pushU8(0xa0 | n);
      else if (n < 256) { pushU8(0xd9); pushU8(n); }
      else if (n < 65536) { pushU8(0xda); pushU16(n); }
      else { pushU8(0xdb); pushU32(n); }
      pushBytes(bytes);
      return;
    }
    if (v instanceof Uint8Array) {
      const n = v.length;
      if (n < 256) { pushU8(0xc4); pushU8(n); } else if (n < 65536) { pushU8(0xc5); pushU16(n); } else { pushU8(0xc6); pushU32(n); }
      pushBytes(v);
      return;
    }
    if (Array.isArray(v)) {
      const n = v.length;
      if (n < 16) pushU8(0x90 | n); else if (n < 65536) { pushU8(0xdc); pushU16(n); } else { pushU8(0xdd); pushU32(n); }
      for (const item of v) enc(item);
      return;
    }
    if (typeof v === "object") {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      const n = keys.length;
      if (n < 16) pushU8(0x80 | n); else if (n < 65536) { pushU8(0xde); pushU16(n); } else { pushU8(0xdf); pushU32(n); }
      for (const k of keys) { enc(k); enc(v[k]); }
      return;
    }
    throw new TypeError(`msgpack: cannot encode ${typeof v}`);
  }
  enc(value);
  return new Uint8Array(out);
}

// Decode every complete value in `bytes` (one WebSocket message carries one or more frames).
export function decodeAll(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const str = (n) => { const s = textDecoder.decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const bin = (n) => { const b = bytes.slice(pos, pos + n); pos += n; return b; };
  const arr = (n) => { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = dec(); return a; };
  const map = (n) => { const m = {}; for (let i = 0; i < n; i++) { const k = dec(); m[k] = dec(); } return m; };
  function u8() { return view.getUint8(pos++); }
  function u16() { const v = view.getUint16(pos); pos += 2; return v; }
  function u32() { const v = view.getUint32(pos); pos += 4; return v; }
  function dec() {
    const b = u8();
    if (b < 0x80) return b;
    if (b < 0x90) return map(b & 0x0f);
    if (b < 0xa0) return arr(b & 0x0f);
    if (b < 0xc0) return str(b & 0x1f);
    if (b >= 0xe0) return b - 256;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u8());
      case 0xc5: return bin(u16());
      case 0xc6: return bin(u32());
      case 0xca: { const v = view.getFloat32(pos); pos += 4; return v; }
      case 0xcb: { const v = view.getFloat64(pos); pos += 8; return v; }
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: { const v = Number(view.getBigUint64(pos)); pos += 8; return v; }
      case 0xd0: { const v = view.getInt8(pos); pos += 1; return v; }
      case 0xd1: { const v = view.getInt16(pos); pos += 2; return v; }
      case 0xd2: { const v = view.getInt32(pos); pos += 4; return v; }
      case 0xd3: { const v = Number(view.getBigInt64(pos)); pos += 8; return v; }
      case 0xd9: return str(u8());
      case 0xda: return str(u16());
      case 0xdb: return str(u32());
      case 0xdc: return arr(u16());
      case 0xdd: return arr(u32());
      case 0xde: return map(u16());
      case 0xdf: return map(u32());
      default: throw new Error(`msgpack: unsupported type byte 0x${b.toString(16)}`);
    }
  }
  const values = [];
  while (pos < bytes.length) values.push(dec());
  return values;
}
