/** What every image decoder shares: the RGB image type, its one error class and the wording of its messages. */

/** 8-bit RGB image, row-major HWC, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Thrown for an unreadable, unsupported, corrupt or oversized image; the message names the file. */
export class ImageError extends Error {
  override name = "ImageError";
}

/** A decoded image as stored in the file, with the orientation its metadata asks for (1..8, or undefined). */
export interface StoredImage {
  image: RgbImage;
  orientation: number | undefined;
}

export type ImageKind = "PNG" | "JPEG" | "WebP";

/** The file stops before its image data ends (a cut-short download or copy): refused, never shown in part. */
export function truncatedImage(fileLabel: string, kind: ImageKind, where: string): ImageError {
  return new ImageError(
    `${fileLabel}: truncated ${kind} image: the file ends ${where} (a cut-short download or copy?); use the complete file`,
  );
}

/** The file is damaged (bad checksum, undecodable data): refused rather than decoded into wrong pixels. */
export function corruptImage(fileLabel: string, kind: ImageKind, detail: string): ImageError {
  return new ImageError(
    `${fileLabel}: corrupt ${kind} image (${detail}); use an intact copy or re-save it with an image editor`,
  );
}

/** Refuses a zero-sized or too large image from its header, before any pixel buffer is allocated. */
export function checkPixelCount(
  fileLabel: string,
  kind: ImageKind,
  width: number,
  height: number,
  maxPixels: number,
): void {
  if (width <= 0 || height <= 0) throw corruptImage(fileLabel, kind, `image size ${width}x${height}`);
  if (width * height > maxPixels) {
    throw new ImageError(
      `${fileLabel}: image is ${width}x${height} = ${((width * height) / 1e6).toFixed(1)} megapixels, over the ${(maxPixels / 1e6).toFixed(1)} megapixel limit`,
    );
  }
}

/** A library's error message on one line. */
export function errText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s+/g, " ").trim() || "unknown error";
}
