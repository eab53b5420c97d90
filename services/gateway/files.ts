/**
 * Files (POST/GET/DELETE /v1/files…) in a JetStream object store: uploaded batch inputs and
 * the output and error files batches produce. Nothing touches the gateway's local disk, so
 * any instance serves any file. A file belongs to the tenant of the key that made it.
 */
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import { nuid } from "@nats-io/transport-node";
import { GatewayError } from "./openai-error.ts";

export const FILE_PURPOSES = ["batch", "batch_output"] as const;
export type FilePurpose = (typeof FILE_PURPOSES)[number];

/** OpenAI's file object. */
export interface FileObject {
  id: string;
  object: "file";
  bytes: number;
  created_at: number;
  filename: string;
  purpose: FilePurpose;
  status: "processed";
  status_details: null;
  expires_at: null;
}

export class FileStore {
  readonly #os: ObjectStore;

  constructor(os: ObjectStore) {
    this.#os = os;
  }

  /** Stores a file; `id` is given for a batch's own output files, so writing them again replaces them. */
  async put(tenant: string, filename: string, purpose: FilePurpose, data: Uint8Array, id = `file-${nuid.next()}`): Promise<FileObject> {
    const createdAt = Math.floor(Date.now() / 1000);
    const info = await this.#os.putBlob({ name: id, description: filename, metadata: { tenant, purpose, filename, created_at: String(createdAt) } }, data);
    return toFileObject(info);
  }

  /** The file, or a 404 when it does not exist or belongs to another tenant. */
  async get(tenant: string, id: string): Promise<FileObject> {
    return toFileObject(await this.#own(tenant, id));
  }

  async content(tenant: string, id: string): Promise<Uint8Array> {
    await this.#own(tenant, id);
    const data = await this.#os.getBlob(id);
    if (!data) throw notFound(id);
    return data;
  }

  async list(tenant: string, purpose?: string): Promise<FileObject[]> {
    const all = await this.#os.list();
    return all
      .filter((i) => !i.deleted && i.metadata?.tenant === tenant && (purpose === undefined || i.metadata?.purpose === purpose))
      .map(toFileObject)
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
  }

  async delete(tenant: string, id: string): Promise<{ id: string; object: "file"; deleted: true }> {
    await this.#own(tenant, id);
    await this.#os.delete(id);
    return { id, object: "file", deleted: true };
  }

  async #own(tenant: string, id: string): Promise<ObjectInfo> {
    const info = await this.#os.info(id);
    if (!info || info.deleted || info.metadata?.tenant !== tenant) throw notFound(id);
    return info;
  }
}

function notFound(id: string): GatewayError {
  return new GatewayError(404, `No such File object: ${id}`, { code: "not_found", param: "id" });
}

function toFileObject(info: ObjectInfo): FileObject {
  const meta = info.metadata ?? {};
  return {
    id: info.name,
    object: "file",
    bytes: info.size,
    created_at: Number(meta.created_at) || Math.floor(Date.parse(info.mtime) / 1000),
    filename: meta.filename ?? info.description ?? info.name,
    purpose: FILE_PURPOSES.find((p) => p === meta.purpose) ?? "batch",
    status: "processed",
    status_details: null,
    expires_at: null,
  };
}
