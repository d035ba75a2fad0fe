import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toBFloat16Bits, toFloat16Bits } from '../../src/dtype/codec.js';
import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  SafetensorsReader,
  readSafetensorsHeader,
  toMixprecDType,
  toSafetensorsDType,
  writeSafetensors,
  type WritableTensor,
} from '../../src/io/safetensors.js';

let dir: string;
let counter = 0;
const nextPath = (): string => join(dir, `t${counter++}.safetensors`);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mixprec-safetensors-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file laid out by hand: u64 length (or `declaredLength`), header text, data bytes. */
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Uint8Array {
  const text = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(text.byteLength), true);
  out.set(text, 8);
  out.set(data, 8 + text.byteLength);
  return out;
}

async function writeRaw(bytes: Uint8Array): Promise<string> {
  const path = nextPath();
  await writeFile(path, bytes);
  return path;
}

/** Asserts that opening `path` fails with a SafetensorsError naming the file, every fragment and the tensor (if given). */
async function assertBadFile(path: string, fragments: (string | RegExp)[], tensor?: string): Promise<void> {
  await assert.rejects(SafetensorsReader.open(path), (err: unknown) => {
    assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError, got ${String(err)}`);
    assert.equal(err.name, 'SafetensorsError');
    assert.equal(err.file, path);
    assert.ok(err.message.includes(path), `message names the file: ${err.message}`);
    for (const f of fragments) {
      if (typeof f === 'string') assert.ok(err.message.includes(f), `message mentions '${f}': ${err.message}`);
      else assert.match(err.message, f);
    }
    if (tensor !== undefined) {
      assert.equal(err.tensor, tensor);
      assert.ok(err.message.includes(`'${tensor}'`), `message names tensor '${tensor}': ${err.message}`);
    }
    return true;
  });
  // The header-only reader applies the same checks.
  await assert.rejects(readSafetensorsHeader(path), SafetensorsError);
}

const f32Entry = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

describe('dtype mapping', () => {
  it('maps safetensors dtypes to mixprec dtypes where one exists', () => {
    assert.equal(toMixprecDType('F32'), 'float32');
    assert.equal(toMixprecDType('F16'), 'float16');
    assert.equal(toMixprecDType('BF16'), 'bfloat16');
    assert.equal(toMixprecDType('F64'), 'float64');
    assert.equal(toMixprecDType('I32'), 'int32');
    assert.equal(toMixprecDType('I64'), undefined);
    assert.equal(toMixprecDType('U8'), undefined);
    assert.equal(toMixprecDType('BOOL'), undefined);
    for (const d of ['float32', 'float16', 'bfloat16', 'float64', 'int32'] as const) {
      assert.equal(toMixprecDType(toSafetensorsDType(d)), d);
    }
  });
});

describe('round trip', () => {
  it('writes and reads back every dtype bit for bit', async () => {
    const f16 = Uint16Array.from([0x0000, 0x8000, 0x3c00, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff]);
    const bf16 = Uint16Array.from([0x0000, 0x8000, 0x3f80, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x7f7f]);
    const tensors: WritableTensor[] = [
      { name: 'f32', dtype: 'F32', shape: [2, 3], data: Float32Array.from([1.5, -2, 0, -0, Infinity, 3.4028234663852886e38]) },
      { name: 'f16', dtype: 'F16', shape: [8], data: f16 },
      { name: 'bf16', dtype: 'BF16', shape: [2, 2, 2], data: bf16 },
      { name: 'f64', dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) },
      { name: 'i32', dtype: 'I32', shape: [4], data: Int32Array.from([0, -1, 2147483647, -2147483648]) },
      { name: 'i64', dtype: 'I64', shape: [3], data: BigInt64Array.from([0n, -(2n ** 63n), 2n ** 63n - 1n]) },
      { name: 'u8', dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 127, 128, 255]) },
      { name: 'bool', dtype: 'BOOL', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
      { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.from([42]) },
      { name: 'empty', dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      { name: 'empty_i64', dtype: 'I64', shape: [0], data: new BigInt64Array(0) },
    ];
    const path = nextPath();
    await writeSafetensors(path, tensors);
    const reader = await SafetensorsReader.open(path);
    try {
      assert.deepEqual(reader.tensors().map((t) => t.name), tensors.map((t) => t.name).sort());
      for (const t of tensors) {
        const got = await reader.read(t.name);
        assert.equal(got.dtype, t.dtype, t.name);
        assert.deepEqual(got.shape, t.shape, t.name);
        assert.equal(got.data.constructor, (t.data as object).constructor, t.name);
        assert.deepEqual(got.data, t.data, t.name);
      }
      // fp16/bf16 bits survive exactly, NaN and subnormal included.
      assert.deepEqual([...(await reader.read('f16')).data], [...f16]);
      assert.deepEqual([...(await reader.read('bf16')).data], [...bf16]);
      assert.deepEqual(reader.info('scalar'), { name: 'scalar', dtype: 'F32', shape: [], byteOffset: reader.info('scalar').byteOffset, byteLength: 4 });
      assert.equal(reader.info('empty').byteLength, 0);
    } finally {
      await reader.close();
    }
  });

  it('decodes any dtype to float32 with readAsFloat32', async () => {
    const path = nextPath();
    const values = [1, -2.5, 0.099975586, 65504];
    await writeSafetensors(path, [
      { name: 'h', dtype: 'F16', shape: [4], data: Uint16Array.from(values, toFloat16Bits) },
      { name: 'b', dtype: 'BF16', shape: [4], data: Uint16Array.from(values, toBFloat16Bits) },
      { name: 'd', dtype: 'F64', shape: [2], data: Float64Array.from([0.1, 3]) },
      { name: 'l', dtype: 'I64', shape: [2], data: BigInt64Array.from([-7n, 1n << 40n]) },
      { name: 'k', dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) },
    ]);
    const reader = await SafetensorsReader.open(path);
    try {
      assert.deepEqual([...(await reader.readAsFloat32('h'))], [1, -2.5, 0.0999755859375, 65504]);
      assert.deepEqual([...(await reader.readAsFloat32('b'))], [1, -2.5, 0.10009765625, 65536]);
      assert.deepEqual([...(await reader.readAsFloat32('d'))], [Math.fround(0.1), 3]);
      assert.deepEqual([...(await reader.readAsFloat32('l'))], [-7, 2 ** 40]);
      assert.deepEqual([...(await reader.readAsFloat32('k'))], [1, 0]);
    } finally {
      await reader.close();
    }
  });

  it('keeps metadata', async () => {
    const path = nextPath();
    const metadata = { format: 'pt', note: 'λ "quoted"', empty: '' };
    await writeSafetensors(path, [{ name: 'x', dtype: 'F32', shape: [1], data: Float32Array.from([1]) }], metadata);
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual(reader.metadata, metadata);
    await reader.close();
    // Without metadata the header has no __metadata__ entry, as Hugging Face writes it.
    const bare = nextPath();
    await writeSafetensors(bare, [{ name: 'x', dtype: 'F32', shape: [1], data: Float32Array.from([1]) }]);
    assert.ok(!(await readFile(bare)).toString('latin1').includes('__metadata__'));
    assert.deepEqual((await readSafetensorsHeader(bare)).metadata, {});
  });

  it('pads the header with spaces to a multiple of 8 bytes', async () => {
    for (const name of ['a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'abcdefg', 'abcdefgh']) {
      const path = nextPath();
      await writeSafetensors(path, [{ name, dtype: 'F64', shape: [1], data: Float64Array.from([1]) }]);
      const bytes = await readFile(path);
      const n = Number(bytes.readBigUInt64LE(0));
      assert.equal(n % 8, 0, `header length ${n} for name '${name}'`);
      const text = bytes.subarray(8, 8 + n).toString('utf8');
      assert.match(text, /^\{.*\} *$/);
      const header = await readSafetensorsHeader(path);
      assert.equal(header.dataStart % 8, 0);
      assert.equal(header.tensors[0]!.byteOffset, header.dataStart);
    }
  });

  it('writes byte for byte what Hugging Face writes', async () => {
    // Expected bytes from huggingface/safetensors bindings/python/tests/test_simple.py (test_serialization).
    const expected = Buffer.concat([
      Buffer.from('@\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}    ', 'latin1'),
      Buffer.alloc(16),
    ]);
    const path = nextPath();
    await writeSafetensors(path, [{ name: 'test', dtype: 'I32', shape: [2, 2], data: new Int32Array(4) }]);
    assert.deepEqual(await readFile(path), expected);
  });

  it('reads a Hugging Face file with metadata and an unaligned data buffer', async () => {
    // From huggingface/safetensors test_simple.py (test_deserialization_metadata), with data filled in.
    const header = '{"__metadata__":{"framework":"pt"},"test1":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}       ';
    const path = await writeRaw(rawFile(header, new Uint8Array(Int32Array.from([1, -2, 3, 4]).buffer)));
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual(reader.metadata, { framework: 'pt' });
    const info = reader.info('test1');
    assert.equal(info.byteOffset, 8 + header.length);
    assert.notEqual(info.byteOffset % 4, 0); // unaligned in the file, yet read into an aligned array
    assert.deepEqual((await reader.read('test1')).data, Int32Array.from([1, -2, 3, 4]));
    await reader.close();
  });

  it('fetches lazy data one tensor at a time, in name order', async () => {
    const path = nextPath();
    const calls: string[] = [];
    const lazy = (name: string, values: number[]): WritableTensor => ({
      name, dtype: 'F32', shape: [values.length],
      data: async () => { calls.push(name); return Float32Array.from(values); },
    });
    async function* source(): AsyncGenerator<WritableTensor> {
      yield lazy('z', [3, 4]);
      yield { name: 'm', dtype: 'I32', shape: [1], data: Int32Array.from([9]) };
      yield lazy('a', [1]);
    }
    await writeSafetensors(path, source());
    assert.deepEqual(calls, ['a', 'z']);
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual(reader.names(), ['a', 'm', 'z']);
    assert.deepEqual((await reader.read('z')).data, Float32Array.from([3, 4]));
    assert.deepEqual((await reader.read('m')).data, Int32Array.from([9]));
    await reader.close();
  });

  it('writes from a view into a larger buffer without the rest of it', async () => {
    const path = nextPath();
    const big = Float32Array.from([0, 1, 2, 3, 4, 5]);
    await writeSafetensors(path, [{ name: 'v', dtype: 'F32', shape: [3], data: big.subarray(2, 5) }]);
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual((await reader.read('v')).data, Float32Array.from([2, 3, 4]));
    await reader.close();
  });

  it('reads a file whose header order differs from its data order', async () => {
    const data = new Uint8Array(Float32Array.from([10, 11, 20, 21, 22]).buffer);
    const header = { b: f32Entry(8, 20), a: f32Entry(0, 8) };
    const path = await writeRaw(rawFile(header, data));
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual(reader.names(), ['a', 'b']);
    assert.deepEqual((await reader.read('a')).data, Float32Array.from([10, 11]));
    assert.deepEqual((await reader.read('b')).data, Float32Array.from([20, 21, 22]));
    await reader.close();
  });

  it('accepts a file with no tensors', async () => {
    const path = nextPath();
    await writeSafetensors(path, []);
    const reader = await SafetensorsReader.open(path);
    assert.deepEqual(reader.tensors(), []);
    await reader.close();
  });
});

describe('reader API', () => {
  it('names a missing tensor, and missing or unexpected names', async () => {
    const path = nextPath();
    await writeSafetensors(path, [
      { name: 'wte', dtype: 'F32', shape: [1], data: Float32Array.from([1]) },
      { name: 'extra', dtype: 'F32', shape: [1], data: Float32Array.from([1]) },
    ]);
    const reader = await SafetensorsReader.open(path);
    try {
      assert.equal(reader.has('wte'), true);
      assert.equal(reader.has('wpe'), false);
      assert.throws(() => reader.info('wpe'), (e: unknown) => e instanceof SafetensorsError && e.tensor === 'wpe' && e.message.includes(path) && /no such tensor/.test(e.message));
      await assert.rejects(reader.read('wpe'), SafetensorsError);
      assert.throws(() => reader.checkNames(['wte', 'wpe']), (e: unknown) => e instanceof SafetensorsError && /missing tensors 'wpe'/.test(e.message) && /unexpected tensors 'extra'/.test(e.message));
      assert.throws(() => reader.checkNames(['wte', 'wpe'], { allowExtra: true }), (e: unknown) => e instanceof SafetensorsError && !/unexpected/.test(e.message));
      reader.checkNames(['wte'], { allowExtra: true });
      reader.checkNames(['extra', 'wte']);
    } finally {
      await reader.close();
    }
    await assert.rejects(reader.read('wte'), (e: unknown) => e instanceof SafetensorsError && /closed/.test(e.message));
  });

  it('fails with a typed error if the file is truncated after opening', async () => {
    const path = nextPath();
    await writeSafetensors(path, [{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(4) }]);
    const reader = await SafetensorsReader.open(path);
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 4));
    await assert.rejects(reader.read('w'), (e: unknown) => e instanceof SafetensorsError && e.tensor === 'w' && /truncated/.test(e.message));
    await reader.close();
  });
});

describe('malformed files', () => {
  it('rejects a file shorter than 8 bytes', async () => {
    await assertBadFile(await writeRaw(new Uint8Array(5)), ['5 bytes', 'shorter than the 8-byte header length']);
  });

  it('rejects a header length beyond the end of the file', async () => {
    const path = await writeRaw(rawFile('{}', new Uint8Array(0), 1000n));
    await assertBadFile(path, ['header length 1000', 'beyond the end of the file (10 bytes)']);
  });

  it('rejects a huge header length before allocating anything', async () => {
    for (const declared of [2n ** 64n - 1n, 2n ** 53n, BigInt(MAX_HEADER_BYTES) + 1n]) {
      const path = await writeRaw(rawFile('{}', new Uint8Array(0), declared));
      await assertBadFile(path, [`header length ${declared}`, 'exceeds the limit']);
    }
  });

  it('rejects a header that is not JSON', async () => {
    await assertBadFile(await writeRaw(rawFile('{"a": [1, 2')), ['header is not valid JSON']);
  });

  it('rejects a header that is not UTF-8', async () => {
    const bytes = rawFile('{"a":1}');
    bytes[10] = 0xff;
    await assertBadFile(await writeRaw(bytes), ['not valid UTF-8']);
  });

  it('rejects a header that is not an object', async () => {
    await assertBadFile(await writeRaw(rawFile('[1, 2, 3]')), ['header is not a JSON object', "not '{'"]);
    await assertBadFile(await writeRaw(rawFile(' {}')), ['header is not a JSON object']);
  });

  it('rejects a tensor entry that is not an object', async () => {
    await assertBadFile(await writeRaw(rawFile({ w: [1, 2] })), ['not an object'], 'w');
  });

  it('rejects an unknown dtype', async () => {
    const path = await writeRaw(rawFile({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)));
    await assertBadFile(path, ['unknown dtype "F128"', 'supported: F32'], 'w');
  });

  it('rejects a shape with a negative or non-integer entry', async () => {
    for (const bad of [-1, 1.5, '2', null]) {
      const path = await writeRaw(rawFile({ w: { dtype: 'F32', shape: [2, bad], data_offsets: [0, 8] } }, new Uint8Array(8)));
      await assertBadFile(path, [`has entry ${JSON.stringify(bad)}`, 'not a non-negative integer'], 'w');
    }
    const notArray = await writeRaw(rawFile({ w: { dtype: 'F32', shape: 4, data_offsets: [0, 16] } }, new Uint8Array(16)));
    await assertBadFile(notArray, ['shape 4 is not an array'], 'w');
  });

  it('rejects malformed data_offsets', async () => {
    for (const bad of [[0], [0, 4, 8], [-4, 0], [0, 'x'], null]) {
      const path = await writeRaw(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: bad } }, new Uint8Array(4)));
      await assertBadFile(path, ['data_offsets', 'not a pair of non-negative integers'], 'w');
    }
    const reversed = await writeRaw(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)));
    await assertBadFile(reversed, ['data_offsets [4, 0] end before they begin'], 'w');
  });

  it('rejects data_offsets out of range', async () => {
    const path = await writeRaw(rawFile({ a: f32Entry(0, 8), b: f32Entry(8, 16) }, new Uint8Array(12)));
    await assertBadFile(path, ['data_offsets [8, 16] are out of range', 'holds 12 bytes'], 'b');
  });

  it('rejects overlapping offsets', async () => {
    const path = await writeRaw(rawFile({ a: f32Entry(0, 8), b: f32Entry(4, 12) }, new Uint8Array(12)));
    await assertBadFile(path, ['data_offsets [4, 12] overlap', "'a'"], 'b');
  });

  it('rejects a gap between tensors', async () => {
    const path = await writeRaw(rawFile({ a: f32Entry(0, 8), b: f32Entry(12, 20) }, new Uint8Array(20)));
    await assertBadFile(path, ['gap of 4 bytes', "after tensor 'a'"], 'b');
    const atStart = await writeRaw(rawFile({ a: f32Entry(4, 8) }, new Uint8Array(8)));
    await assertBadFile(atStart, ['gap of 4 bytes at the start of the data buffer'], 'a');
  });

  it('rejects a byte length that does not match dtype x shape', async () => {
    const path = await writeRaw(rawFile({ w: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 8] } }, new Uint8Array(8)));
    await assertBadFile(path, ['byte length 8', 'does not match dtype BF16 x shape [2, 3] = 12 bytes'], 'w');
  });

  it('rejects a shape so large that its byte length cannot match', async () => {
    const path = await writeRaw(rawFile({ w: { dtype: 'F64', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, new Uint8Array(8)));
    await assertBadFile(path, ['does not match dtype F64'], 'w');
  });

  it('rejects a tensor name given twice, which JSON.parse would resolve silently', async () => {
    // The second entry alone would make a valid file: the first is the one JSON.parse drops.
    const twice = `{"w": ${JSON.stringify(f32Entry(0, 4))}, "a": ${JSON.stringify(f32Entry(0, 8))},\n "w" : ${JSON.stringify(f32Entry(8, 16))}}`;
    await assertBadFile(await writeRaw(rawFile(twice, new Uint8Array(16))), ['appears twice in the header'], 'w');
    // Names inside entries and escaped quotes in names are not keys of the header.
    const fine = `{"a\\"b": ${JSON.stringify(f32Entry(0, 4))}, "__metadata__": {"a\\"b": "x", "dtype": "y"}}`;
    const reader = await SafetensorsReader.open(await writeRaw(rawFile(fine, new Uint8Array(4))));
    assert.deepEqual(reader.names(), ['a"b']);
    await reader.close();
  });

  it('rejects trailing bytes not covered by any tensor', async () => {
    const path = await writeRaw(rawFile({ a: f32Entry(0, 8) }, new Uint8Array(11)));
    await assertBadFile(path, ['3 trailing bytes after offset 8', 'not covered by any tensor']);
  });

  it('rejects metadata that is not an object of strings', async () => {
    const path = await writeRaw(rawFile({ __metadata__: { step: 3 } }));
    await assertBadFile(path, ["__metadata__ entry 'step' is 3, not a string"]);
  });
});

describe('writer validation', () => {
  async function assertBadWrite(tensors: WritableTensor[], fragments: string[], tensor?: string): Promise<void> {
    const path = nextPath();
    await writeFile(path, 'previous content');
    await assert.rejects(writeSafetensors(path, tensors), (err: unknown) => {
      assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError, got ${String(err)}`);
      assert.equal(err.file, path);
      assert.ok(err.message.includes(path), err.message);
      for (const f of fragments) assert.ok(err.message.includes(f), `message mentions '${f}': ${err.message}`);
      if (tensor !== undefined) assert.ok(err.message.includes(`'${tensor}'`), err.message);
      return true;
    });
    // The previous file is untouched and no temporary file is left behind.
    assert.equal(await readFile(path, 'utf8'), 'previous content');
    assert.deepEqual((await readdir(dir)).filter((n) => n.includes('.tmp')), []);
  }

  it('rejects data whose length does not match the shape', async () => {
    await assertBadWrite([{ name: 'w', dtype: 'F32', shape: [2, 3], data: new Float32Array(5) }], ['data has 5 elements', 'shape [2, 3] needs 6'], 'w');
  });

  it('rejects data of the wrong array type', async () => {
    // 4 bytes either way: a Float32Array would silently be read as two fp16 values.
    await assertBadWrite([{ name: 'h', dtype: 'F16', shape: [2], data: new Float32Array(1) }], ['dtype F16 needs its data as a Uint16Array of raw bits', 'Float32Array'], 'h');
  });

  it('rejects lazy data that does not match, after writing has begun', async () => {
    await assertBadWrite([
      { name: 'a', dtype: 'F32', shape: [1], data: Float32Array.from([1]) },
      { name: 'b', dtype: 'I64', shape: [2], data: async () => new BigInt64Array(3) },
    ], ['data has 3 elements'], 'b');
  });

  it('rejects a lazy data callback that fails', async () => {
    await assertBadWrite([{ name: 'w', dtype: 'F32', shape: [1], data: async () => { throw new Error('device lost'); } }], ['fetching the data failed: device lost'], 'w');
  });

  it('rejects duplicate names, bad names, bad shapes, unknown dtypes and non-boolean BOOL data', async () => {
    const one = Float32Array.from([1]);
    await assertBadWrite([{ name: 'w', dtype: 'F32', shape: [1], data: one }, { name: 'w', dtype: 'F32', shape: [1], data: one }], ['appears twice'], 'w');
    await assertBadWrite([{ name: '__metadata__', dtype: 'F32', shape: [1], data: one }], ['is not allowed']);
    await assertBadWrite([{ name: 'w', dtype: 'F32', shape: [-1], data: one }], ['must be an array of non-negative integers'], 'w');
    await assertBadWrite([{ name: 'w', dtype: 'F8' as 'F32', shape: [1], data: one }], ['unknown dtype "F8"'], 'w');
    await assertBadWrite([{ name: 'k', dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 2]) }], ['holds 2 at index 1'], 'k');
  });
});
