#!/usr/bin/env node
// ort-run.js: run an ONNX model with ONNX Runtime (onnxruntime-node, CPU) on a
// float32 .npy batch and write its output as a float32 .npy. An independent checker
// for faultline's ONNX import/export (it shares no code with faultline or PyTorch).
//
// Usage:
//   (cd scripts && npm ci --ignore-scripts)   # once: onnxruntime-node 1.30.0, pinned
//                                             # in scripts/package-lock.json; the
//                                             # Linux x64 CPU library is in the package,
//                                             # so its download script is not needed
//   node scripts/ort-run.js --model FILE.onnx --input images.npy --out logits.npy
//        [--batch 100] [--threads 1] [--opt all|extended|basic|disabled] [--output NAME]
//
// The model must have one float32 input whose first dimension is the batch; the
// input .npy ([N, ...], little-endian float32, C order) is fed in batches of
// --batch rows along that dimension, and the chosen output (the one named
// `logits` if there is one, else the only output, or --output NAME) is
// concatenated into --out as float32 [N, ...]. --threads sets ORT's intra-op
// threads (default 1: the machine is shared); --opt its graph optimisation level
// (default all). Errors go to stderr with exit status 1 (2 for usage errors).
// The .npy reader/writer is our own (format versions 1.0, 2.0 and 3.0 read;
// 1.0 written).
'use strict';

const fs = require('fs');
const path = require('path');

class UsageError extends Error {}

function fail(msg, code = 1) {
  process.stderr.write(`ort-run: ${msg}\n`);
  process.exit(code);
}

// ---------------------------------------------------------------------------
// .npy

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

// Parse the header dict, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
function parseNpyHeader(text, file) {
  const bad = (why) => new Error(`${file}: bad .npy header (${why}): ${JSON.stringify(text.trim())}`);
  const t = text.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) throw bad('not a dict');
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(t);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(t);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(t);
  if (!descr) throw bad('no descr');
  if (!fortran) throw bad('no fortran_order');
  if (!shape) throw bad('no shape');
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    if (!/^\d+$/.test(s)) throw bad(`shape entry ${JSON.stringify(s)}`);
    const v = Number(s);
    if (!Number.isSafeInteger(v)) throw bad(`shape entry ${s} too large`);
    return v;
  });
  return { descr: descr[1], fortranOrder: fortran[1] === 'True', shape: dims };
}

// readNpyFloat32(file) -> { shape: number[], data: Float32Array }
function readNpyFloat32(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${e.message}`);
  }
  if (buf.length < 10 || !buf.subarray(0, 6).equals(NPY_MAGIC)) {
    throw new Error(`${file}: not a .npy file (no \\x93NUMPY magic)`);
  }
  const major = buf[6];
  let headerLen;
  let start;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new Error(`${file}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    start = 12;
  } else {
    throw new Error(`${file}: unsupported .npy format version ${major}.${buf[7]}`);
  }
  if (start + headerLen > buf.length) throw new Error(`${file}: truncated .npy header`);
  const hdr = parseNpyHeader(buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen), file);
  if (hdr.descr !== '<f4') {
    throw new Error(`${file}: dtype ${hdr.descr} is not little-endian float32 ('<f4'); ` +
      'convert it, e.g. numpy.save(f, a.astype("<f4"))');
  }
  if (hdr.fortranOrder) throw new Error(`${file}: Fortran-order arrays are not supported; save a C-order copy`);
  const count = hdr.shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const want = count * 4;
  if (buf.length - offset !== want) {
    throw new Error(`${file}: shape (${hdr.shape.join(', ')}) needs ${want} data bytes, file has ${buf.length - offset}`);
  }
  // Copy: the data offset need not be 4-byte aligned within the Buffer's memory.
  const data = new Float32Array(count);
  const le = new Uint8Array(data.buffer);
  le.set(buf.subarray(offset, offset + want));
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
    // big-endian host: swap each float's bytes
    for (let i = 0; i < want; i += 4) {
      [le[i], le[i + 1], le[i + 2], le[i + 3]] = [le[i + 3], le[i + 2], le[i + 1], le[i]];
    }
  }
  return { shape: hdr.shape, data };
}

// writeNpyFloat32(file, shape, data): format 1.0, '<f4', C order.
function writeNpyFloat32(file, shape, data) {
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`internal: ${data.length} values for shape (${shape.join(', ')})`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // pad with spaces so that magic+version+len+header+'\n' is a multiple of 64
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header + ' '.repeat(total - 10 - header.length - 1) + '\n';
  if (header.length > 0xffff) throw new Error('internal: .npy header too long');
  const pre = Buffer.alloc(10);
  NPY_MAGIC.copy(pre, 0);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(count * 4);
  for (let i = 0; i < count; i++) body.writeFloatLE(data[i], i * 4);
  const tmp = `${file}.tmp${process.pid}`;
  try {
    fs.writeFileSync(tmp, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch (_) { /* not there */ }
    throw new Error(`cannot write ${file}: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// command line

function parseArgs(argv) {
  const opts = { batch: 100, threads: 1, opt: 'all', output: null };
  const need = { '--model': 'model', '--input': 'input', '--out': 'out' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(usage() + '\n');
      process.exit(0);
    }
    const eq = a.indexOf('=');
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    if (!need[key] && !['--batch', '--threads', '--opt', '--output'].includes(key)) {
      throw new UsageError(`unknown argument ${JSON.stringify(a)}`);
    }
    let val;
    if (key !== a) {
      val = a.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      val = argv[++i];
    }
    if (need[key]) {
      opts[need[key]] = val;
    } else if (key === '--batch' || key === '--threads') {
      if (!/^\d+$/.test(val) || Number(val) < 1) throw new UsageError(`${key} must be a positive integer, not ${JSON.stringify(val)}`);
      opts[key.slice(2)] = Number(val);
    } else if (key === '--opt') {
      if (!['all', 'extended', 'basic', 'disabled'].includes(val)) throw new UsageError(`--opt must be all, extended, basic or disabled, not ${JSON.stringify(val)}`);
      opts.opt = val;
    } else {
      opts.output = val; // --output
    }
  }
  for (const [flag, name] of Object.entries(need)) {
    if (!opts[name]) throw new UsageError(`${flag} is required`);
  }
  return opts;
}

function usage() {
  return 'usage: node ort-run.js --model FILE.onnx --input IN.npy --out OUT.npy ' +
    '[--batch 100] [--threads 1] [--opt all|extended|basic|disabled] [--output NAME]';
}

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    throw new Error(`cannot load onnxruntime-node (${e.message.split('\n')[0]}); ` +
      `install it with: (cd ${path.relative(process.cwd(), __dirname) || '.'} && npm ci --ignore-scripts)`);
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) fail(`${e.message}\n${usage()}`, 2);
    throw e;
  }
  if (!fs.existsSync(opts.model)) throw new Error(`model ${opts.model} does not exist`);
  const x = readNpyFloat32(opts.input);
  if (x.shape.length < 1 || x.shape[0] < 1) {
    throw new Error(`${opts.input}: need an array with a leading batch dimension of at least 1, got shape (${x.shape.join(', ')})`);
  }
  const ort = loadOrt();
  let session;
  try {
    session = await ort.InferenceSession.create(opts.model, {
      executionProviders: ['cpu'],
      intraOpNumThreads: opts.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: opts.opt,
    });
  } catch (e) {
    throw new Error(`ONNX Runtime cannot load ${opts.model}: ${e.message}`);
  }
  if (session.inputNames.length !== 1) {
    throw new Error(`${opts.model} has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); ort-run feeds exactly one`);
  }
  const inName = session.inputNames[0];
  let outName = opts.output;
  if (outName === null) {
    if (session.outputNames.includes('logits')) outName = 'logits';
    else if (session.outputNames.length === 1) outName = session.outputNames[0];
    else throw new Error(`${opts.model} has outputs ${session.outputNames.join(', ')}; choose one with --output`);
  } else if (!session.outputNames.includes(outName)) {
    throw new Error(`${opts.model} has no output ${JSON.stringify(outName)} (it has ${session.outputNames.join(', ')})`);
  }

  const n = x.shape[0];
  const rest = x.shape.slice(1);
  const rowLen = rest.reduce((a, b) => a * b, 1);
  let out = null;
  let outRest = null;
  let outRowLen = 0;
  for (let i = 0; i < n; i += opts.batch) {
    const b = Math.min(opts.batch, n - i);
    const feed = new ort.Tensor('float32', x.data.subarray(i * rowLen, (i + b) * rowLen), [b, ...rest]);
    let res;
    try {
      res = await session.run({ [inName]: feed }, [outName]);
    } catch (e) {
      throw new Error(`ONNX Runtime failed on rows ${i}..${i + b - 1} of ${opts.input} (input shape [${[b, ...rest].join(', ')}]): ${e.message}`);
    }
    const y = res[outName];
    if (y.type !== 'float32') throw new Error(`output ${outName} is ${y.type}, not float32`);
    const dims = y.dims.map(Number);
    if (dims.length < 1 || dims[0] !== b) {
      throw new Error(`output ${outName} has shape [${dims.join(', ')}] for a batch of ${b}; its first dimension is not the batch`);
    }
    if (out === null) {
      outRest = dims.slice(1);
      outRowLen = outRest.reduce((a, c) => a * c, 1);
      out = new Float32Array(n * outRowLen);
    } else if (dims.slice(1).join(',') !== outRest.join(',')) {
      throw new Error(`output ${outName} changed shape between batches: [${outRest.join(', ')}] then [${dims.slice(1).join(', ')}]`);
    }
    out.set(y.data, i * outRowLen);
  }
  writeNpyFloat32(opts.out, [n, ...outRest], out);
  if (typeof session.release === 'function') await session.release();
}

module.exports = { readNpyFloat32, writeNpyFloat32, parseNpyHeader };

if (require.main === module) {
  main().catch((e) => fail(e && e.message ? e.message : String(e)));
}
